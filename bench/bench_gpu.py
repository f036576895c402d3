#!/usr/bin/env python3
"""GPU throughput of the streaming step: torch fp32/fp16, onnxruntime-CUDA, TensorRT fp16/int8.

For each model (default: stt_bise18 and its per-frame baseline bise18) at 1024x2048: export the
graph once (random weights unless --weights), build the TensorRT engines (cached beside the ONNX in
--workdir, so a second run skips the build), then run every variant through the real runtime
(``create_backend`` + ``StreamingSegmenter``) on the same synthetic video. After warm-up (ring
buffers full), repetitions go round-robin over the variants (the starting variant rotates), and
the median network time per step (upload, step, argmax, class-map download, synchronised) is
reported as fps, with the ratio to torch fp32 and the mask agreement with it.

Cross-camera batching (``--cameras N``, default 4; 0 skips it): for each temporal model and variant,
N cameras (each its own ring buffer) stepped one by one (``infer``) against stepped together
(``infer_many``: torch one batch through the per-frame network, TensorRT every camera's execution
context on its own CUDA stream, started before any is waited for), alternating rounds; reported as
throughput batched / sequential (the target is >= 1.3x on a GPU).

int8 calibrates on --calib-dir (a directory of images or a rosbag2); without it, on the synthetic
frames: the speed is meaningful then, the int8 accuracy is not.

References: a well-tuned BiSeNetV1 (ResNet18) reaches 112 / 239 / 435 fps fp32 / fp16 / int8 with
TensorRT 10 on an A40 at 1024x2048; the paper's STT-BiSe18 reached 44.2 fps (its hardware).

On a machine without a CUDA GPU this prints why and exits with status 0. A benchmark, not a test.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy
sys.path.insert(0, str(Path(__file__).resolve().parent))

VARIANTS = ("torch-fp32", "torch-fp16", "ort-cuda", "trt-fp16", "trt-int8")
REFERENCE_FPS = {"bise18": {"trt-fp32": 112, "trt-fp16": 239, "trt-int8": 435}, "stt_bise18": {"paper": 44.2}}


def gpu_missing() -> str | None:
    """Why this machine cannot run the benchmark (None: it can)."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return (f"no CUDA GPU visible to torch {torch.__version__} "
                f"({'CPU-only build' if torch.version.cuda is None else 'CUDA build, but no device/driver'})")
    return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  .venv/bin/python bench/bench_gpu.py --workdir /data/engines\n"
               "  .venv/bin/python bench/bench_gpu.py --models stt_bise18 --variants torch-fp16 trt-fp16 --reps 100\n"
               "  .venv/bin/python bench/bench_gpu.py --calib-dir data/synthdrive/val/images --cuda-graph "
               "--json /tmp/gpu.json")
    p.add_argument("--models", nargs="+", default=["stt_bise18", "bise18"], help="zoo models (default: %(default)s)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS,
                   help="what to run (default: all)")
    p.add_argument("--height", type=int, default=1024, help="network input height (default: %(default)s)")
    p.add_argument("--width", type=int, default=2048, help="network input width (default: %(default)s)")
    p.add_argument("--reps", type=int, default=50, help="measured steps per variant (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=10, help="steps after the buffer is full (default: %(default)s)")
    p.add_argument("--device", default="cuda", help="cuda or cuda:N (default: %(default)s)")
    p.add_argument("--weights", help="checkpoint for the first model (default: random weights)")
    p.add_argument("--workdir", help="where ONNX files and engine caches live (default: a temporary directory)")
    p.add_argument("--calib-dir", help="int8 calibration frames: directory of images or rosbag2")
    p.add_argument("--calib-frames", type=int, default=100, help="int8 calibration frames (default: %(default)s)")
    p.add_argument("--cuda-graph", action="store_true", help="TensorRT variants replay CUDA graphs")
    p.add_argument("--cameras", type=int, default=4,
                   help="cameras of the batching comparison (default: %(default)s; 0 or 1 skips it)")
    p.add_argument("--json", metavar="PATH", help="also write the figures to PATH as JSON")
    args = p.parse_args(argv)
    if args.reps < 1 or args.warmup < 0:
        p.error("--reps must be >= 1 and --warmup >= 0")
    return args


def make_backends(model_name: str, args: argparse.Namespace, workdir: Path, frames: list[np.ndarray],
                  failed: dict[str, str]) -> dict:
    """The variants' backends; a variant that cannot be created goes to ``failed`` (name -> why), the others on."""
    import cv2
    import torch

    from stt_ros.config import STTConfig
    from stt_ros.model.zoo import build_model
    from stt_ros.weights import load_weights
    from stt_train.export import export_step

    cfg = STTConfig(model=model_name, input_height=args.height, input_width=args.width, device=args.device)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    if args.weights and model_name == args.models[0]:
        load_weights(model, args.weights, config=cfg.to_dict())
    onnx = workdir / f"{model_name}_{args.height}x{args.width}.onnx"
    if not onnx.is_file():
        t0 = time.perf_counter()
        export_step(model, cfg, onnx)
        print(f"  exported {onnx.name} in {time.perf_counter() - t0:.0f} s", flush=True)
    calib = args.calib_dir
    if "trt-int8" in args.variants and calib is None:
        calib_dir = workdir / "synthetic_calibration"
        if not calib_dir.is_dir():
            calib_dir.mkdir()
            for i, f in enumerate(frames[:args.calib_frames]):
                cv2.imwrite(str(calib_dir / f"{i:05d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        calib = str(calib_dir)
    backends = {}
    for v in args.variants:
        t0 = time.perf_counter()
        try:
            backends[v] = _make_variant(v, cfg, model, onnx, calib, args)
        except Exception as exc:  # noqa: BLE001 (one variant's failure, e.g. no TensorRT, must not hide the others)
            failed[v] = f"{type(exc).__name__}: {exc}"
            print(f"  {model_name} {v}: FAILED: {failed[v]}", flush=True)
            continue
        print(f"  {model_name} {v}: ready in {time.perf_counter() - t0:.0f} s", flush=True)
    return backends


def _make_variant(v: str, cfg, model, onnx: Path, calib: str | None, args: argparse.Namespace):
    import torch

    from stt_ros.model.zoo import build_model
    from stt_ros.runtime import create_backend

    if v == "torch-fp32":
        return create_backend(cfg, model)
    if v == "torch-fp16":
        torch.manual_seed(0)
        m16 = build_model(cfg).eval()
        m16.load_state_dict(model.state_dict())
        return create_backend(cfg.replace(precision="fp16"), m16)
    if v == "ort-cuda":
        return create_backend(cfg.replace(backend="onnxruntime", weights=str(onnx)),
                              providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    prec = v.split("-")[1]  # trt-fp16, trt-int8: strongly typed engines from the fp16 / Q/DQ graph
    opts = {"cuda_graph": args.cuda_graph}
    if prec == "int8":
        opts.update(calib_source=calib, calib_frames=args.calib_frames)
    return create_backend(cfg.replace(backend="tensorrt", precision=prec, weights=str(onnx)), **opts)


def run_model(model_name: str, args: argparse.Namespace, workdir: Path, frames: list[np.ndarray]) -> dict:
    from stt_ros.runtime import StreamingSegmenter

    failed: dict[str, str] = {}
    backends = make_backends(model_name, args, workdir, frames, failed)
    segs = {v: StreamingSegmenter(b, output_size="network") for v, b in backends.items()}
    if not segs:
        raise RuntimeError(f"no variant could run: {failed}")
    cap = max(s.capacity for s in segs.values())
    warm = cap + args.warmup
    for i in range(warm):
        for v in list(segs):
            try:
                segs[v].process(frames[i % len(frames)])
            except Exception as exc:  # noqa: BLE001 (a variant that fails to run drops out alone)
                failed[v] = f"{type(exc).__name__}: {exc}"
                print(f"  {model_name} {v}: FAILED while running: {failed[v]}", flush=True)
                del segs[v]
    names = list(segs)
    times: dict[str, list[float]] = {v: [] for v in names}
    agree: dict[str, list[float]] = {v: [] for v in names}
    for i in range(args.reps):
        frame = frames[(warm + i) % len(frames)]
        order = names[i % len(names):] + names[:i % len(names)]
        masks = {}
        for v in order:
            res = segs[v].process(frame)
            times[v].append(res.timings["network_ms"])
            masks[v] = res.class_map_net
        ref = masks.get("torch-fp32")
        for v in names:
            if ref is not None:
                agree[v].append(float((masks[v] == ref).mean()))
    med = {v: statistics.median(t) for v, t in times.items()}
    batching = {}
    if args.cameras > 1:  # run_batching skips a per-frame model
        from bench_engines import run_batching

        runs = {(model_name, v): (backends[v].config, backends[v]) for v in names}
        batching = run_batching(runs, frames, args.cameras, min(args.reps, 20), args.warmup)
    return {"model": model_name, "median_ms": med, "fps": {v: 1e3 / m for v, m in med.items()},
            "mask_agreement_with_torch_fp32": {v: min(a) for v, a in agree.items() if a}, "samples_ms": times,
            "failed": failed, "batching": batching}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    reason = gpu_missing()
    if reason is not None:
        print(f"bench_gpu: no GPU here: {reason}. Nothing measured; run this on a machine with an NVIDIA GPU "
              f"(torch with CUDA, onnxruntime-gpu, TensorRT 10.x or 11.x and cuda-python installed).")
        return 0
    import torch
    from bench_stt_step import synthetic_frames

    print(f"bench_gpu: {', '.join(args.models)} at {args.height}x{args.width} on {torch.cuda.get_device_name()} "
          f"(torch {torch.__version__}); variants {', '.join(args.variants)}; {args.reps} steps each, round-robin"
          f"{', CUDA graphs' if args.cuda_graph else ''}")
    frames = synthetic_frames(args.height, args.width, 64, seed=0)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        workdir = Path(args.workdir) if args.workdir else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for name in args.models:
            try:
                results.append(run_model(name, args, workdir, frames))
            except Exception as exc:  # noqa: BLE001 (export failed, or no variant ran): say so, go on
                print(f"  {name}: FAILED: {type(exc).__name__}: {exc}", flush=True)
    print()
    print(f"  {'fps (median)':<14}" + "".join(f"{v:>12}" for v in args.variants))
    for r in results:
        print(f"  {r['model']:<14}" + "".join(f"{r['fps'].get(v, float('nan')):12.1f}" for v in args.variants))
        if "torch-fp32" in r["fps"]:
            base = r["fps"]["torch-fp32"]
            print(f"  {'  x torch fp32':<14}" + "".join(f"{r['fps'].get(v, float('nan')) / base:12.2f}"
                                                      for v in args.variants))
            print(f"  {'  masks = fp32':<14}" + "".join(
                f"{100 * r['mask_agreement_with_torch_fp32'].get(v, float('nan')):11.2f}%" for v in args.variants))
        for v, why in r["failed"].items():
            print(f"  {'':<14}{v} failed: {why}")
        if r["batching"]:
            print(f"  {r['model']}: {args.cameras} cameras, median ms of a round (every camera one step):")
            for v, b in r["batching"].items():
                print(f"    {v:<12} sequential {b['sequential_ms']:8.1f}  batched ({b['batching']}) "
                      f"{b['batched_ms']:8.1f}  throughput {b['speedup']:.2f}x (target >= 1.3x)")
    print(f"  reference: BiSeNetV1-R18 TensorRT 10 on an A40 at 1024x2048: {REFERENCE_FPS['bise18']} fps; "
          f"paper STT-BiSe18: {REFERENCE_FPS['stt_bise18']['paper']} fps")
    if args.json:
        Path(args.json).write_text(json.dumps({"benchmark": "bench_gpu", "device": torch.cuda.get_device_name(),
                                               "input": [args.height, args.width], "results": results},
                                              indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
