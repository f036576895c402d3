#!/usr/bin/env python3
"""Streaming step of an STT model vs its per-frame baseline, measured side by side in one run.

Both models run through the real runtime (``create_backend`` + ``StreamingSegmenter``) on the same
synthetic video (a smooth image with sharp-edged shapes, shifted a few pixels every frame). The STT
segmenter is warmed up until its ring buffer is full, so every measured step attends to T frames.
Repetitions alternate STT / baseline (which one goes first alternates too) and also time the STT
module alone (``stt(feat, memory, order)`` + ``stt.project_memory(feat)``) on a real feature map
with that full buffer. Medians are reported.

``--method both`` (the default) runs two STT segmenters with the same weights, one per attention
computation (``tiles``, the module's default, and ``gather``, the previous formulation), in the same
interleaved rounds, and prints for each the module's time, its attention FLOPs and the GFLOP/s.

The paper (Li et al., ACM MM 2021) gives 50 fps for BiSe18 and 44.2 fps for STT-BiSe18 at
512x1024, a ratio of 1.13; the target here is ``stt_step / bise_step <= 1.10``.

This is a benchmark, not a test: it never fails on a missed target, it reports it.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy

from stt_ros.config import STTConfig
from stt_ros.model.stt import key_index_table, key_size, query_tiles, tile_blocked, tile_flops, tile_tables
from stt_ros.runtime import StreamingSegmenter, create_backend

TARGET_RATIO = 1.10
PAPER_RATIO = 50.0 / 44.2
MIB = 2 ** 20


# ---------------------------------------------------------------------------- synthetic video
def synthetic_frames(height: int, width: int, count: int, seed: int, dy: int = 1, dx: int = 3) -> list[np.ndarray]:
    """``count`` RGB uint8 (height, width, 3) frames: one smooth canvas with sharp-edged rectangles
    and discs (so query selection sees boundaries), cropped ``(dy, dx)`` pixels further each frame."""
    rng = np.random.default_rng(seed)
    ch, cw = height + dy * count, width + dx * count
    yy, xx = np.mgrid[0:ch, 0:cw].astype(np.float32)
    canvas = np.stack([
        127 + 60 * np.sin(xx / 37.0) + 40 * np.cos(yy / 23.0),
        127 + 70 * np.sin((xx + yy) / 51.0),
        60 + 120 * yy / ch + 30 * np.cos(xx / 71.0),
    ], -1)
    for _ in range(40):
        colour = rng.uniform(0, 255, 3).astype(np.float32)
        cy, cx = rng.uniform(0, ch), rng.uniform(0, cw)
        ry, rx = rng.uniform(10, ch / 6), rng.uniform(10, cw / 6)
        if rng.random() < 0.5:
            mask = (np.abs(yy - cy) < ry) & (np.abs(xx - cx) < rx)
        else:
            mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
        canvas[mask] = colour
    canvas = np.clip(canvas, 0, 255).astype(np.uint8)
    return [np.ascontiguousarray(canvas[i * dy:i * dy + height, i * dx:i * dx + width]) for i in range(count)]


# ---------------------------------------------------------------------------- memory probes
def _status_kib(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _malloc_trim() -> bool:
    """Give glibc's free heap pages back to the OS, so pages reused by the measured call count as
    growth instead of hiding in memory freed by earlier steps."""
    try:
        ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)
    except (OSError, AttributeError, TypeError):
        return False
    return True


def peak_rss_growth_mib(fn, reps: int = 3) -> tuple[float, str]:
    """Largest peak-RSS growth (MiB) over ``reps`` calls of ``fn`` and how it was measured."""
    growth = []
    method = ""
    for _ in range(reps):
        gc.collect()
        trimmed = _malloc_trim()
        if _reset_peak_rss():
            base = _status_kib("VmRSS")
            fn()
            growth.append((_status_kib("VmHWM") - base) / 1024)
            method = "VmHWM after clear_refs" + (" + malloc_trim" if trimmed else "")
        else:
            base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            fn()
            growth.append((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)
            method = ("ru_maxrss (clear_refs not writable: a LOWER BOUND, 0 if the process peaked "
                      "earlier)")
    return max(growth), method


# ---------------------------------------------------------------------------- helpers
def med(xs: list[float]) -> float:
    return statistics.median(xs)


def row(name: str, xs: list[float]) -> str:
    m = med(xs)
    return f"  {name:<34} {m:9.1f} {min(xs):9.1f} {max(xs):9.1f} {1e3 / m:8.2f}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  .venv/bin/python bench/bench_stt_step.py --reps 10 --json /tmp/stt_step.json\n"
               "  .venv/bin/python bench/bench_stt_step.py --model stt_psp18 --height 256 --width 512")
    p.add_argument("--model", default="stt_bise18",
                   help="STT zoo model; the baseline is the same name without 'stt_' (default: %(default)s)")
    p.add_argument("--height", type=int, default=512, help="network input height (default: %(default)s)")
    p.add_argument("--width", type=int, default=1024, help="network input width (default: %(default)s)")
    p.add_argument("--reps", type=int, default=10, help="measured steps per variant (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=2,
                   help="warm-up steps per variant after the STT ring buffer is full (default: %(default)s)")
    p.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default (default: %(default)s)")
    p.add_argument("--method", choices=("both", "tiles", "gather"), default="both",
                   help="STT attention computation(s): tiles (the default), gather (the previous formulation) or "
                        "both, measured side by side (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed for weights and frames (default: %(default)s)")
    p.add_argument("--json", metavar="PATH", help="also write the figures to PATH as JSON")
    args = p.parse_args(argv)
    if not args.model.startswith("stt_"):
        p.error(f"--model must be an STT model (stt_*), got {args.model!r}")
    if args.reps < 1 or args.warmup < 0:
        p.error("--reps must be >= 1 and --warmup >= 0")
    return args


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    base_name = args.model.removeprefix("stt_")
    methods = ["tiles", "gather"] if args.method == "both" else [args.method]
    cfg_stt = STTConfig(model=args.model, input_height=args.height, input_width=args.width)
    cfg_base = cfg_stt.replace(model=base_name)
    backends = {}
    for m in methods:  # the same seed: the same weights for every method
        torch.manual_seed(args.seed)
        backends[m] = create_backend(cfg_stt)
        backends[m].model.stt.method = m
    torch.manual_seed(args.seed)
    backend_base = create_backend(cfg_base)
    segs = {m: StreamingSegmenter(b) for m, b in backends.items()}
    seg_base = StreamingSegmenter(backend_base)
    first = backends[methods[0]]
    stt = first.model.stt
    T = segs[methods[0]].capacity
    fh, fw = args.height // 8, args.width // 8

    warm = T + args.warmup  # after T steps the buffer is full; the T+1-th step is the first full one
    frames = synthetic_frames(args.height, args.width, warm + args.reps, args.seed)
    n_sel = sum(k for *_, k in query_tiles(fh, fw, stt.query_ratio, stt.query_tiles))
    useful = 4 * n_sel * key_size(stt.half_widths) * stt.attn_dim  # scores + values, 2 FLOPs per mul-add
    executed = {"gather": useful, "tiles": tile_flops(fh, fw, stt.half_widths, stt.tile, stt.attn_dim)}

    print(f"bench_stt_step: {args.model} streaming step vs {base_name} per-frame step")
    print(f"  input {args.height}x{args.width} (feature map {fh}x{fw}x{stt.channels}), batch 1, fp32, "
          f"device cpu, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"  STT: T={T} s={cfg_stt.key_window_start} e={cfg_stt.key_window_end} eps={cfg_stt.key_window_step} "
          f"r={cfg_stt.query_radius} TR={cfg_stt.query_ratio} attn_dim={cfg_stt.attn_dim} heads={cfg_stt.attn_heads} "
          f"half-widths={list(stt.half_widths)} key size={key_size(stt.half_widths)} tile={stt.tile}; "
          f"method(s): {', '.join(methods)}")
    print(f"  warm-up {warm} steps each (buffer full after {T}), then {args.reps} measured steps each, interleaved")

    with torch.inference_mode():
        for i in range(warm):
            for seg in (*segs.values(), seg_base):
                seg.process(frames[i])
        for m, seg in segs.items():
            assert seg.fill == T, f"{m}: ring buffer not full after warm-up ({seg.fill}/{T})"

        # a real feature map of a measured frame for the module-only timing
        x = first.normalize(torch.from_numpy(frames[warm]).unsqueeze(0))
        feat, _ = first.model.segnet.features(x)
        memory = segs[methods[0]].state.storage
        order = segs[methods[0]].state.order()

        def stt_module(method: str):
            def run() -> tuple[torch.Tensor, torch.Tensor]:
                stt.method = method
                return stt(feat, memory, order), stt.project_memory(feat)
            return run

        modules = {m: stt_module(m) for m in methods}
        for fn in modules.values():
            fn()
        ru0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        names = [*methods, "base"]
        total = {n: [] for n in names}
        network = {n: [] for n in names}
        t_mod = {m: [] for m in methods}
        pair = {m: [] for m in methods}
        for i in range(args.reps):
            frame = frames[warm + i]
            shift = i % len(names)  # rotate which goes first
            for name in names[shift:] + names[:shift]:
                seg = seg_base if name == "base" else segs[name]
                res = seg.process(frame)
                if name != "base" and res.buffer_fill != T:
                    raise RuntimeError(f"measured STT step saw {res.buffer_fill}/{T} buffered frames")
                total[name].append(res.timings["total_ms"])
                network[name].append(res.timings["network_ms"])
            for m in (methods if i % 2 == 0 else methods[::-1]):
                t0 = time.perf_counter()
                modules[m]()
                t_mod[m].append((time.perf_counter() - t0) * 1e3)
            for m in methods:
                pair[m].append(total[m][-1] / total["base"][-1])
        ru1, w1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()

        # memory: after all timings (malloc_trim changes what the allocator keeps around)
        ring_mib = memory.numel() * memory.element_size() / MIB
        pos, inside, frame_idx = key_index_table(fh, fw, stt.half_widths)
        table_mib = {"gather": sum(t.numel() * t.element_size() for t in (pos, inside, frame_idx)) / MIB}
        tab = tile_tables(fh, fw, stt.half_widths, stt.tile)
        blocked = tile_blocked(fh, fw, stt.half_widths, stt.tile)
        table_mib["tiles"] = sum(t.numel() * t.element_size() for t in
                                 (tab.pos, tab.frame, tab.inside, tab.window, tab.slot, blocked)) / MIB
        peak = {m: peak_rss_growth_mib(modules[m]) for m in methods}

    m_base = med(total["base"])
    print()
    print(f"  {'per step (ms)':<34} {'median':>9} {'min':>9} {'max':>9} {'fps':>8}")
    for m in methods:
        print(row(f"{args.model} step total ({m})", total[m]))
        print(row(f"{args.model} step network ({m})", network[m]))
    print(row(f"{base_name} step total", total["base"]))
    print(row(f"{base_name} step network", network["base"]))
    for m in methods:
        print(row(f"STT module ({m})", t_mod[m]))
    print()
    results = {}
    for m in methods:
        m_stt, m_mod = med(total[m]), med(t_mod[m])
        results[m] = {"ratio_total": m_stt / m_base, "ratio_network": med(network[m]) / med(network["base"]),
                      "ratio_paired_median": med(pair[m]), "stt_total_ms": m_stt, "stt_network_ms": med(network[m]),
                      "stt_module_ms": m_mod, "module_share": m_mod / m_stt,
                      "gflops_per_s_useful": useful / m_mod / 1e6, "gflops_per_s_executed": executed[m] / m_mod / 1e6,
                      "table_mib": table_mib[m], "peak_working_set_mib": peak[m][0]}
        r = results[m]
        print(f"  {m}: ratio {args.model}/{base_name}: total {r['ratio_total']:.3f}, network only "
              f"{r['ratio_network']:.3f}, median of per-repetition ratios {r['ratio_paired_median']:.3f} "
              f"(paper {PAPER_RATIO:.3f}, target <= {TARGET_RATIO})")
        print(f"  {m}: STT module (stt + project_memory) {m_mod:.1f} ms = {100 * r['module_share']:.1f}% of the STT "
              f"step; step difference {m_stt - m_base:+.1f} ms; attention FLOPs useful {useful / 1e9:.3f} G, "
              f"executed {executed[m] / 1e9:.3f} G: {r['gflops_per_s_useful']:.1f} useful GFLOP/s "
              f"({r['gflops_per_s_executed']:.1f} executed) over the whole module call")
        print(f"  {m}: STT extra memory: ring buffer {ring_mib:.1f} MB, index tables {table_mib[m]:.1f} MB, "
              f"peak working set +{peak[m][0]:.1f} MB")
    if len(methods) == 2:
        print(f"  module time gather/tiles {med(t_mod['gather']) / med(t_mod['tiles']):.2f}x, step time gather/tiles "
              f"{med(total['gather']) / med(total['tiles']):.2f}x (same run, interleaved)")
    print(f"  process CPU time while measuring: user {ru1.ru_utime - ru0.ru_utime:.1f} s, "
          f"sys {ru1.ru_stime - ru0.ru_stime:.1f} s, wall {w1 - w0:.1f} s, minor page faults "
          f"{ru1.ru_minflt - ru0.ru_minflt:,d}")
    print(f"    (MB = 2^20 bytes; index tables: gather {tuple(pos.shape)} {pos.dtype} positions + bool inside, "
          f"tiles the block positions {tuple(tab.pos.shape)} + masks {tuple(blocked.shape)}; shared by every fill "
          f"level (a column prefix per level); peak working set: {peak[methods[0]][1]}, max of 3 module calls)")
    ratio_total = results[methods[0]]["ratio_total"]
    met = ratio_total <= TARGET_RATIO
    print(f"RESULT stt_step({methods[0]})/{base_name}_step ratio={ratio_total:.2f} (target <= {TARGET_RATIO}) "
          f"{'met' if met else 'NOT met'}; module {results[methods[0]]['gflops_per_s_useful']:.1f} useful GFLOP/s")

    if args.json:
        out = {
            "benchmark": "bench_stt_step", "model": args.model, "baseline": base_name,
            "input": [args.height, args.width], "feature_map": [fh, fw, stt.channels],
            "torch": torch.__version__, "threads": torch.get_num_threads(), "reps": args.reps, "warmup": warm,
            "settings": {"T": T, "s": cfg_stt.key_window_start, "e": cfg_stt.key_window_end,
                         "eps": cfg_stt.key_window_step, "r": cfg_stt.query_radius, "TR": cfg_stt.query_ratio,
                         "attn_dim": cfg_stt.attn_dim, "heads": cfg_stt.attn_heads,
                         "key_size": key_size(stt.half_widths), "tile": stt.tile},
            "base_total_ms": m_base, "base_network_ms": med(network["base"]),
            "gflop": {"useful": useful / 1e9, **{f"executed_{m}": executed[m] / 1e9 for m in methods}},
            "methods": results, "paper_ratio": PAPER_RATIO, "target_ratio": TARGET_RATIO, "target_met": met,
            "ring_buffer_mib": ring_mib,
            "samples_ms": {"total": total, "network": network, "stt_module": t_mod},
        }
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
