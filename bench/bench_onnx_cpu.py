#!/usr/bin/env python3
"""Streaming step on the CPU: torch backend vs onnxruntime backend, measured side by side in one run.

One random-weight model (same weights in both) is exported with ``stt-export``'s ``export_step``
and run through the real runtime (``create_backend`` + ``StreamingSegmenter``) on the same synthetic
video (bench_stt_step's: smooth canvas, sharp shapes, shifted every frame). Both segmenters are
warmed up until their ring buffers are full, then repetitions alternate torch / onnxruntime (which
one goes first alternates too); medians are reported, with the per-frame mask agreement between
the two. ``--method both`` (default) exports and runs the STT model twice (same weights): with the
tiled attention (the module's default) and with the previous gathered-window computation, all
segmenters in the same interleaved rounds. The per-frame baseline (same name without ``stt_``) is
measured the same way, so the ratio can be split into the backbone's share and the temporal
transformer's.

This is a benchmark, not a test: it reports, it never fails on a number.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_stt_step import synthetic_frames  # noqa: E402

from stt_ros.config import STTConfig  # noqa: E402
from stt_ros.model.zoo import build_model  # noqa: E402
from stt_ros.runtime import StreamingSegmenter, create_backend  # noqa: E402
from stt_train.export import DEFAULT_QUERY_CHUNK, export_step  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  .venv/bin/python bench/bench_onnx_cpu.py\n"
               "  .venv/bin/python bench/bench_onnx_cpu.py --reps 20 --query-chunk 512 --json /tmp/onnx_cpu.json\n"
               "  .venv/bin/python bench/bench_onnx_cpu.py --height 256 --width 512 --no-baseline")
    p.add_argument("--model", default="stt_bise18", help="STT zoo model (default: %(default)s)")
    p.add_argument("--height", type=int, default=512, help="network input height (default: %(default)s)")
    p.add_argument("--width", type=int, default=1024, help="network input width (default: %(default)s)")
    p.add_argument("--reps", type=int, default=10, help="measured steps per backend (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=2, help="steps after the buffer is full (default: %(default)s)")
    p.add_argument("--query-chunk", type=int, default=DEFAULT_QUERY_CHUNK,
                   help="queries per attention chunk in the exported graph (default: %(default)s)")
    p.add_argument("--threads", type=int, default=0,
                   help="threads for both torch and onnxruntime; 0 = each library's default (default: %(default)s)")
    p.add_argument("--method", choices=("both", "tiles", "gather"), default="both",
                   help="STT attention computation(s) exported and measured side by side (default: %(default)s)")
    p.add_argument("--no-baseline", action="store_true", help="skip the per-frame baseline pair")
    p.add_argument("--seed", type=int, default=0, help="seed for weights and frames (default: %(default)s)")
    p.add_argument("--json", metavar="PATH", help="also write the figures to PATH as JSON")
    args = p.parse_args(argv)
    if not args.model.startswith("stt_"):
        p.error(f"--model must be an STT model (stt_*), got {args.model!r}")
    if args.reps < 1 or args.warmup < 0:
        p.error("--reps must be >= 1 and --warmup >= 0")
    return args


def build_pair(cfg: STTConfig, workdir: Path, args: argparse.Namespace, method: str | None) -> dict:
    """Export ``cfg``'s model (STT attention computed with ``method``), then a torch and an onnxruntime
    segmenter over the same weights."""
    torch.manual_seed(args.seed)
    model = build_model(cfg).eval()
    if method is not None:
        model.stt.method = method
    path = workdir / f"{cfg.model}_{method or 'base'}.onnx"
    t0 = time.perf_counter()
    result = export_step(model, cfg, path, query_chunk=args.query_chunk)
    export_s = time.perf_counter() - t0
    options = {"threads": args.threads} if args.threads > 0 else {}
    backends = {"torch": create_backend(cfg, model),
                "onnxruntime": create_backend(cfg.replace(backend="onnxruntime", weights=str(path)), **options)}
    return {"label": cfg.model + (f" ({method})" if method else ""), "model": cfg.model, "method": method,
            "segs": {name: StreamingSegmenter(b, output_size="network") for name, b in backends.items()},
            "export_s": export_s, "onnx_mib": result.size_bytes / 2 ** 20,
            "providers": backends["onnxruntime"].providers}


def measure(pairs: list[dict], args: argparse.Namespace, frames: list[np.ndarray]) -> list[dict]:
    """Every segmenter of every pair on the same frames, interleaved (the order rotates every step)."""
    segs = [(i, name, seg) for i, p in enumerate(pairs) for name, seg in p["segs"].items()]
    cap = max(seg.capacity for *_, seg in segs)
    warm = cap + args.warmup
    times = [{name: [] for name in p["segs"]} for p in pairs]
    agree = [[] for _ in pairs]
    paired = [[] for _ in pairs]
    with torch.inference_mode():
        for i in range(warm):
            for *_, seg in segs:
                seg.process(frames[i])
        for i in range(args.reps):
            frame = frames[warm + i]
            shift = i % len(segs)
            masks = [{} for _ in pairs]
            for k, name, seg in segs[shift:] + segs[:shift]:
                res = seg.process(frame)
                if res.buffer_fill != seg.capacity:
                    raise RuntimeError(f"{name}: measured step saw {res.buffer_fill}/{seg.capacity} buffered frames")
                times[k][name].append(res.timings["network_ms"])
                masks[k][name] = res.class_map_net
            for k in range(len(pairs)):
                agree[k].append(float((masks[k]["torch"] == masks[k]["onnxruntime"]).mean()))
                paired[k].append(times[k]["onnxruntime"][-1] / times[k]["torch"][-1])
    out = []
    for k, p in enumerate(pairs):
        med = {name: statistics.median(ts) for name, ts in times[k].items()}
        out.append({"label": p["label"], "model": p["model"], "method": p["method"], "median_ms": med,
                    "min_ms": {n: min(t) for n, t in times[k].items()},
                    "ratio_ort_over_torch": med["onnxruntime"] / med["torch"],
                    "ratio_paired_median": statistics.median(paired[k]), "mask_agreement_min": min(agree[k]),
                    "export_s": p["export_s"], "onnx_mib": p["onnx_mib"], "providers": p["providers"],
                    "samples_ms": times[k], "buffer": p["segs"]["torch"].capacity})
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    import onnxruntime as ort

    cfg = STTConfig(model=args.model, input_height=args.height, input_width=args.width)
    base = cfg.replace(model=args.model.removeprefix("stt_"))
    methods = ["tiles", "gather"] if args.method == "both" else [args.method]
    frames = synthetic_frames(args.height, args.width, cfg.key_frames + args.warmup + args.reps, args.seed)
    print(f"bench_onnx_cpu: torch vs onnxruntime (CPU) streaming step, {args.model}"
          f"{'' if args.no_baseline else f' and {base.model}'}; STT attention: {', '.join(methods)}")
    print(f"  input {args.height}x{args.width}, batch 1, fp32, torch {torch.__version__} ({torch.get_num_threads()} "
          f"threads), onnxruntime {ort.__version__} ({args.threads or 'default'} intra-op threads)")
    print(f"  STT: T={cfg.key_frames} TR={cfg.query_ratio} r={cfg.query_radius} attn_dim={cfg.attn_dim} "
          f"heads={cfg.attn_heads}; exported graph: opset 17, query chunk {args.query_chunk}")
    print(f"  warm-up until the buffers are full (+{args.warmup}), then {args.reps} measured steps each, all "
          f"segmenters interleaved, rotating which goes first")
    with tempfile.TemporaryDirectory(prefix="bench_onnx_") as tmp:
        pairs = [build_pair(cfg, Path(tmp), args, m) for m in methods]
        if not args.no_baseline:
            pairs.append(build_pair(base, Path(tmp), args, None))
        results = measure(pairs, args, frames)
    print()
    print(f"  {'per step, network (ms)':<32} {'torch':>9} {'onnxrt':>9} {'ort/torch':>10} {'paired':>8} "
          f"{'masks equal':>12} {'export':>8} {'graph':>9}")
    for r in results:
        m = r["median_ms"]
        print(f"  {r['label']:<32} {m['torch']:9.1f} {m['onnxruntime']:9.1f} {r['ratio_ort_over_torch']:10.3f} "
              f"{r['ratio_paired_median']:8.3f} {100 * r['mask_agreement_min']:11.2f}% {r['export_s']:7.1f}s "
              f"{r['onnx_mib']:6.1f} MiB")
    by = {r["method"]: r["median_ms"] for r in results}
    if None in by:
        b = by[None]
        for meth in methods:
            s = by[meth]
            print(f"  {meth}: temporal overhead (stt - baseline): torch {s['torch'] - b['torch']:+.1f} ms, "
                  f"onnxruntime {s['onnxruntime'] - b['onnxruntime']:+.1f} ms; stt/baseline: torch "
                  f"{s['torch'] / b['torch']:.3f}, onnxruntime {s['onnxruntime'] / b['onnxruntime']:.3f}")
            if meth == "tiles" and "gather" in by:
                g = by["gather"]
                print(f"  stt step gather/tiles: torch {g['torch'] / s['torch']:.3f}, onnxruntime "
                      f"{g['onnxruntime'] / s['onnxruntime']:.3f} (same run, interleaved)")
    print(f"  onnxruntime providers: {', '.join(results[0]['providers'])}")
    r = results[0]
    print(f"RESULT {r['label']} onnxruntime/torch CPU step ratio={r['ratio_ort_over_torch']:.2f} "
          f"({r['median_ms']['onnxruntime']:.0f} ms vs {r['median_ms']['torch']:.0f} ms at {args.height}x{args.width})")
    if args.json:
        Path(args.json).write_text(json.dumps({"benchmark": "bench_onnx_cpu", "input": [args.height, args.width],
                                               "reps": args.reps, "query_chunk": args.query_chunk,
                                               "threads": args.threads, "results": results}, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
