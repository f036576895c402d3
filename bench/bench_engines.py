#!/usr/bin/env python3
"""CPU engines side by side: torch fp32/bf16, onnxruntime fp32, OpenVINO fp32/bf16/int8, per-frame
BiSe18 and the STT-BiSe18 streaming step, in one run.

Each model (random weights, one seed: timing does not depend on them) is exported once with
``stt-export``'s ``export_step`` (OpenVINO gets the ``openvino`` attention layout, the one its backend
exports a checkpoint with; the others the ``portable`` one); every engine runs it through the real backends
(``create_backend``) on the same synthetic video (bench_stt_step's). Each stream is warmed up until
its ring buffer is full, then all (model, engine) pairs take turns, one step each per round (the
order rotates every round), so a busy machine slows them alike; medians of the network time are
reported with the STT / per-frame ratio per engine and the class-map agreement with torch fp32
(random weights have flat logits, so low agreement there says little about a trained model).
bf16 runs only where the CPU has it (AVX512-BF16 or AMX: see the flags printed first); int8 is
OpenVINO's NNCF quantization calibrated on the benchmark's own frames (written to an image folder
and read back by stt_ros.runtime.calibration).

Cross-camera batching: per engine, the STT-BiSe18 step of ``--cameras`` cameras (each its own
ring buffer) as ``--cameras`` sequential ``infer`` calls and as one ``infer_many`` call (torch: one
batch through the per-frame network; OpenVINO: every camera's request started before any is
waited for, on a backend with ``openvino_streams`` = the cores, the same cached model, so that they
run side by side), alternating, each camera on its own frames; reported as throughput
batched/sequential.

This is a benchmark, not a test: it reports, it never fails on a number.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_stt_step import synthetic_frames  # noqa: E402

from stt_ros.config import STTConfig  # noqa: E402
from stt_ros.model.stt import EXPORT_LAYOUTS, key_size, query_tiles, tile_flops  # noqa: E402
from stt_ros.model.zoo import MODEL_SPECS, build_model  # noqa: E402
from stt_ros.runtime import create_backend  # noqa: E402
from stt_ros.runtime.torch_backend import cpu_bf16_feature, cpu_flags  # noqa: E402
from stt_train.export import export_step  # noqa: E402

ENGINES = ("torch-fp32", "torch-bf16", "onnxruntime-fp32", "openvino-fp32", "openvino-bf16", "openvino-int8")
FLAGS_SHOWN = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  .venv/bin/python bench/bench_engines.py --quick\n"
               "  .venv/bin/python bench/bench_engines.py                 # 512x1024\n"
               "  .venv/bin/python bench/bench_engines.py --large --json /tmp/engines.json\n"
               "  .venv/bin/python bench/bench_engines.py --sizes 1024x2048 --reps 5 --cameras 2\n"
               "  .venv/bin/python bench/bench_engines.py --engines torch-fp32 openvino-bf16 --reps 20")
    p.add_argument("--quick", action="store_true", help="256x512, 3 reps, 1 warm-up step: a couple of minutes")
    p.add_argument("--large", action="store_true", help="also 1024x2048")
    p.add_argument("--sizes", nargs="+", metavar="HxW", help="input sizes to run instead (e.g. 1024x2048)")
    p.add_argument("--reps", type=int, default=None, help="measured steps per engine (default: 10, --quick 3)")
    p.add_argument("--warmup", type=int, default=None, help="steps after the buffer is full (default: 2, --quick 1)")
    p.add_argument("--key-frames", type=int, default=7, help="T of the STT model (default: %(default)s)")
    p.add_argument("--calib-frames", type=int, default=8,
                   help="OpenVINO int8 calibration frames (default: %(default)s)")
    p.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES), help="engines to run (default: all)")
    p.add_argument("--cameras", type=int, default=4, help="cameras of the batching comparison (default: %(default)s; "
                   "0 skips it)")
    p.add_argument("--seed", type=int, default=0, help="seed for weights and frames (default: %(default)s)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    return p.parse_args(argv)


def cpu_report() -> tuple[str, dict[str, Any]]:
    """Lines describing the CPU (model, the flags that matter, what torch and OpenVINO see) and the facts."""
    flags = cpu_flags()
    name = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    shown = {f: f in flags for f in FLAGS_SHOWN}
    facts: dict[str, Any] = {"cpu": name, "flags": shown, "torch_bf16": cpu_bf16_feature(),
                             "torch_threads": torch.get_num_threads()}
    try:
        import openvino as ov

        from stt_ros.runtime.openvino_backend import cpu_capabilities

        facts["openvino"] = ov.get_version()
        facts["openvino_capabilities"] = cpu_capabilities(ov.Core())
    except ImportError:
        facts["openvino"] = None
    lines = [f"CPU: {name}, {facts['torch_threads']} torch threads",
             "flags: " + " ".join(f"{f}={'yes' if v else 'no'}" for f, v in shown.items()),
             f"torch bf16 feature: {facts['torch_bf16'] or 'none'}; OpenVINO {facts.get('openvino')} "
             f"capabilities: {facts.get('openvino_capabilities')}"]
    return "\n".join(lines), facts


def make_backends(cfg: STTConfig, model: torch.nn.Module, onnx: Path, onnx_ov: Path, calib: Path, engines: list[str],
                  facts: dict[str, Any], calib_frames: int, openvino_streams: int = 1) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for engine in engines:
        backend_name, precision = engine.rsplit("-", 1)
        if precision == "bf16" and (facts["torch_bf16"] if backend_name == "torch"
                                    else "BF16" in (facts.get("openvino_capabilities") or [])) in (None, False):
            print(f"  {engine}: skipped (this CPU has no bf16)")
            continue
        if backend_name == "openvino" and facts.get("openvino") is None:
            print(f"  {engine}: skipped (openvino is not installed)")
            continue
        t0 = time.perf_counter()
        if backend_name == "torch":
            out[engine] = create_backend(cfg.replace(precision=precision), model)
        elif backend_name == "onnxruntime":
            out[engine] = create_backend(cfg.replace(backend="onnxruntime", weights=str(onnx)))
        else:
            opts: dict[str, Any] = {"cache_dir": onnx.parent}
            if precision == "int8":
                opts.update(calib_source=calib, calib_frames=calib_frames)
            out[engine] = create_backend(cfg.replace(backend="openvino", precision=precision, weights=str(onnx_ov),
                                                     openvino_streams=openvino_streams), **opts)
        print(f"  {engine}: ready in {time.perf_counter() - t0:.1f} s")
    return out


def run_rounds(runs: dict[tuple[str, str], tuple[STTConfig, Any]], frames: list[np.ndarray], reps: int,
               warmup: int) -> dict[tuple[str, str], dict[str, float]]:
    """Interleaved rounds over every (model, engine): each one step per round, the order rotating, so
    both models of an engine see the same load; medians of the network time and the class-map
    agreement with the same model on torch fp32."""
    keys = list(runs)
    states = {k: runs[k][1].create_state() for k in keys}
    fill = max(cfg.key_frames if cfg.temporal else 0 for cfg, _ in runs.values())
    times: dict[tuple[str, str], list[float]] = {k: [] for k in keys}
    agree: dict[tuple[str, str], list[float]] = {k: [] for k in keys}
    for i in range(fill + warmup + reps):
        frame = frames[i % len(frames)]
        measured = i >= fill + warmup
        maps = {}
        for k in keys[i % len(keys):] + keys[:i % len(keys)]:
            t0 = time.perf_counter()
            maps[k] = runs[k][1].infer(frame, states[k]).class_map
            if measured:
                times[k].append((time.perf_counter() - t0) * 1e3)
        if measured:
            for model, engine in keys:
                ref = maps.get((model, "torch-fp32"))
                if ref is not None:
                    agree[model, engine].append(float((maps[model, engine] == ref).mean()))
    return {k: {"ms": statistics.median(times[k]), "agree": statistics.mean(agree[k]) if agree[k] else float("nan")}
            for k in keys}


def run_batching(runs: dict[tuple[str, str], tuple[STTConfig, Any]], frames: list[np.ndarray], cameras: int,
                 reps: int, warmup: int, batched_by: dict[str, Any] | None = None) -> dict[str, dict[str, float]]:
    """Per engine (the temporal models; bench_gpu runs it too): ``cameras`` streams stepped one by one
    (``infer``) against the same number stepped together (``infer_many``), alternating rounds; median ms
    of a round of each. ``batched_by``: per engine, another backend of the same graph for the batched
    side (OpenVINO with ``openvino_streams`` = the cores, what a CPU user sets with batch_cameras)."""
    out: dict[str, dict[str, float]] = {}
    for (model, engine), (cfg, backend) in runs.items():
        if not MODEL_SPECS[model].temporal:
            continue
        together = (batched_by or {}).get(engine, backend)
        seq = [backend.create_state() for _ in range(cameras)]
        bat = [together.create_state() for _ in range(cameras)]
        times: dict[str, list[float]] = {"sequential": [], "batched": []}
        for i in range(cfg.key_frames + warmup + reps):
            imgs = [frames[(i + 3 * c) % len(frames)] for c in range(cameras)]
            measured = i >= cfg.key_frames + warmup
            for mode in (("sequential", "batched") if i % 2 else ("batched", "sequential")):
                t0 = time.perf_counter()
                if mode == "sequential":
                    for img, st in zip(imgs, seq, strict=True):
                        backend.infer(img, st)
                else:
                    together.infer_many(imgs, bat)
                if measured:
                    times[mode].append((time.perf_counter() - t0) * 1e3)
        s_ms, b_ms = statistics.median(times["sequential"]), statistics.median(times["batched"])
        out[engine] = {"sequential_ms": s_ms, "batched_ms": b_ms, "speedup": s_ms / b_ms,
                       "batching": together.batching + (f", {together.streams} streams"
                                                        if getattr(together, "streams", 1) > 1 else "")
                       + (f", {together.batch_frames} at a time" if getattr(together, "batch_frames", 0) > 1 else "")}
    return out


def module_flops(cfg: STTConfig) -> dict[str, int]:
    """FLOPs of the temporal module's two attention products (scores and values, 2 per multiply-add):
    useful (the selected queries x their window keys) and executed by each export layout's tiles (every
    position of every tile x its tile's key blocks; the openvino layout's zero-padded queries and whole
    key|value rows double both products)."""
    stt = build_model(cfg).stt
    h, w = cfg.input_height // 8, cfg.input_width // 8
    queries = sum(k for _, _, k in query_tiles(h, w, stt.query_ratio, stt.query_tiles))
    keys = key_size(stt.half_widths)
    out = {"queries": queries, "keys": keys, "useful": 4 * queries * keys * stt.attn_dim}
    for name, layout in EXPORT_LAYOUTS.items():
        out[name] = tile_flops(h, w, stt.half_widths, layout.tile, stt.attn_dim) * (2 if layout.joint_kv else 1)
    return out


def write_calibration_folder(frames: list[np.ndarray], folder: Path, n: int) -> Path:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames[:n]):
        cv2.imwrite(str(folder / f"{i:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return folder


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    reps = args.reps or (3 if args.quick else 10)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    if args.sizes:
        sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes]
    else:
        sizes = [(256, 512)] if args.quick else [(512, 1024)] + ([(1024, 2048)] if args.large else [])
    report, facts = cpu_report()
    print(report)
    print("(timings on a shared machine: compare the ratios within one run, not absolute numbers across runs)")
    results: dict[str, Any] = {"facts": facts, "reps": reps, "warmup": warmup, "sizes": {}}
    with tempfile.TemporaryDirectory(prefix="bench_engines_") as tmp:
        for h, w in sizes:
            n_frames = max(args.key_frames + warmup + reps, args.calib_frames)
            frames = synthetic_frames(h, w, n_frames, seed=args.seed)
            calib = write_calibration_folder(frames, Path(tmp) / f"calib_{h}x{w}", args.calib_frames)
            runs: dict[tuple[str, str], tuple[STTConfig, Any]] = {}
            streams: dict[str, Any] = {}
            for model_name in ("bise18", "stt_bise18"):
                torch.manual_seed(args.seed)
                cfg = STTConfig(model=model_name, input_height=h, input_width=w, key_frames=args.key_frames)
                model = build_model(cfg).eval()
                onnx = Path(tmp) / f"{model_name}_{h}x{w}" / "step.onnx"
                onnx.parent.mkdir()
                print(f"\n{model_name} {h}x{w}: exporting, building the engines")
                export_step(model, cfg, onnx)
                # OpenVINO runs the layout its backend exports a checkpoint with (the others: portable); a
                # per-frame model has no attention, so one graph serves every engine
                onnx_ov = onnx
                if MODEL_SPECS[model_name].temporal and any(e.startswith("openvino") for e in args.engines):
                    onnx_ov = onnx.with_name("step.openvino.onnx")
                    export_step(model, cfg, onnx_ov, layout="openvino")
                for engine, backend in make_backends(cfg, model, onnx, onnx_ov, calib, args.engines, facts,
                                                     args.calib_frames).items():
                    runs[model_name, engine] = (cfg, backend)
                cores = os.cpu_count() or 1
                ov_engines = [e for e in args.engines if e.startswith("openvino") and (model_name, e) in runs]
                if MODEL_SPECS[model_name].temporal and args.cameras > 1 and cores > 1 and ov_engines:
                    # the batched side of OpenVINO: the same cached model on one CPU stream per core
                    print(f"  and for batch_cameras, openvino_streams={cores}:")
                    streams = make_backends(cfg, model, onnx, onnx_ov, calib, ov_engines, facts, args.calib_frames,
                                            openvino_streams=cores)
            timed = run_rounds(runs, frames, reps, warmup)
            batching = run_batching(runs, frames, args.cameras, reps, warmup, streams) if args.cameras > 1 else {}
            per_size: dict[str, Any] = {m: {e: r for (mm, e), r in timed.items() if mm == m}
                                        for m in ("bise18", "stt_bise18")}
            del runs
            results["sizes"][f"{h}x{w}"] = per_size
            per_size["batching"] = batching
            print(f"\n{h}x{w}, T={args.key_frames}, median network ms of {reps} steps (interleaved):")
            print(f"  {'engine':<18} {'BiSe18':>9} {'STT-BiSe18':>11} {'STT/frame':>10} {'agree(STT)':>11}")
            for engine in args.engines:
                a, b = per_size["bise18"].get(engine), per_size["stt_bise18"].get(engine)
                if a is None or b is None:
                    continue
                agree = "-" if math.isnan(b["agree"]) else f"{100 * b['agree']:.1f}%"  # torch-fp32 not run
                print(f"  {engine:<18} {a['ms']:>9.1f} {b['ms']:>11.1f} {b['ms'] / a['ms']:>9.2f}x {agree:>11}")
            flops = module_flops(STTConfig(model="stt_bise18", input_height=h, input_width=w,
                                           key_frames=args.key_frames))
            per_size["module_flops"] = flops
            print(f"  temporal module = STT-BiSe18 - BiSe18 (the same network around it): {flops['useful'] / 1e9:.3f} "
                  f"useful GFLOP ({flops['queries']} selected queries x {flops['keys']} keys); executed by the tiles: "
                  f"{flops['portable'] / 1e9:.2f} (portable layout), {flops['openvino'] / 1e9:.2f} (openvino)")
            for engine in args.engines:
                a, b = per_size["bise18"].get(engine), per_size["stt_bise18"].get(engine)
                if a is None or b is None:
                    continue
                ms = b["ms"] - a["ms"]
                layout = "openvino" if engine.startswith("openvino") else "portable"
                rate = (f"{flops['useful'] / ms / 1e6:.1f} useful / {flops[layout] / ms / 1e6:.0f} executed GFLOP/s"
                        if ms > 0 else "within the noise")
                print(f"    {engine:<18} {ms:>7.1f} ms  {rate}")
            ref = per_size["stt_bise18"].get("torch-fp32")
            if ref and len(per_size["stt_bise18"]) > 1:
                print("  speed-up over torch fp32 (STT): " + ", ".join(
                    f"{e} {ref['ms'] / r['ms']:.2f}x" for e, r in per_size["stt_bise18"].items() if e != "torch-fp32"))
            if batching:
                print(f"  {args.cameras} cameras of STT-BiSe18, median ms of a round (all cameras one step):")
                for engine, r in batching.items():
                    print(f"    {engine:<18} sequential {r['sequential_ms']:>8.1f}  batched ({r['batching']}) "
                          f"{r['batched_ms']:>8.1f}  throughput {r['speedup']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
