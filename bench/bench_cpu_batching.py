#!/usr/bin/env python3
"""What bounds cross-camera batching on a CPU: OpenVINO's own options side by side, in one run.

``bench_engines.py`` measures the backends' ``batch_cameras`` path at their defaults (OpenVINO: every
camera's request started before any is waited for, on one latency stream over every core). This
benchmark asks what else could pay for several cameras on a CPU:

* per-frame BiSe18 on OpenVINO directly, ``--cameras`` frames as one batch (the graph reshaped to
  batch N) against N batch-1 inferences: a true batch through the convolutions;
* the STT-BiSe18 streaming step through the OpenVINO backend (``create_backend``, a ring buffer per
  camera): N cameras stepped one after the other with ``openvino_streams: 1`` (the default: each step
  on every core) against the same N cameras in one ``infer_many`` with ``openvino_streams`` = the
  cores (requests side by side, one core each), and one camera alone on the latter (a camera that is
  the only one waiting: the backend steps it on every core, as with 1).

Random weights (timing does not depend on them), synthetic video, interleaved rounds (medians).
This is a benchmark, not a test: it reports, it never fails on a number.

Example::

    .venv/bin/python bench/bench_cpu_batching.py --cameras 4 --reps 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_engines import cpu_report  # noqa: E402
from bench_stt_step import synthetic_frames  # noqa: E402

from stt_ros.config import STTConfig  # noqa: E402
from stt_ros.model.zoo import build_model  # noqa: E402
from stt_ros.runtime import create_backend  # noqa: E402
from stt_ros.runtime.openvino_backend import convert_onnx  # noqa: E402
from stt_train.export import export_step  # noqa: E402


def timed_rounds(cases: dict[str, callable], reps: int, warmup: int) -> dict[str, float]:
    """Median ms of each case, the cases taking turns (order rotating every round)."""
    names = list(cases)
    times: dict[str, list[float]] = {n: [] for n in names}
    for i in range(warmup + reps):
        for n in names[i % len(names):] + names[:i % len(names)]:
            t0 = time.perf_counter()
            cases[n]()
            if i >= warmup:
                times[n].append((time.perf_counter() - t0) * 1e3)
    return {n: statistics.median(v) for n, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("Example::")[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="512x1024", help="network input HxW (default: %(default)s)")
    p.add_argument("--cameras", type=int, default=4, help="cameras (default: %(default)s)")
    p.add_argument("--precision", default="bf16", choices=["fp32", "bf16"],
                   help="OpenVINO inference precision (default: %(default)s; bf16 needs AVX512-BF16 or AMX)")
    p.add_argument("--reps", type=int, default=10, help="measured rounds (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=2, help="unmeasured rounds first (default: %(default)s)")
    args = p.parse_args(argv)
    import openvino as ov

    h, w = (int(v) for v in args.size.split("x"))
    n, cores = args.cameras, os.cpu_count() or 1
    print(cpu_report()[0])
    precision = ov.Type.bf16 if args.precision == "bf16" else ov.Type.f32
    latency = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
    core = ov.Core()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="bench_cpu_batching_") as tmp:
        graphs = {}
        for name in ("bise18", "stt_bise18"):
            torch.manual_seed(0)
            cfg = STTConfig(model=name, input_height=h, input_width=w)
            graphs[name] = Path(tmp) / f"{name}.onnx"
            export_step(build_model(cfg).eval(), cfg, graphs[name], layout="openvino")
        one = core.compile_model(convert_onnx(ov, graphs["bise18"], args.precision), "CPU", latency)
        batched_model = convert_onnx(ov, graphs["bise18"], args.precision)
        batched_model.reshape({batched_model.inputs[0].get_any_name(): [n, h, w, 3]})
        many = core.compile_model(batched_model, "CPU", latency)
        stt = STTConfig(model="stt_bise18", input_height=h, input_width=w, backend="openvino",
                        precision=args.precision, weights=str(graphs["stt_bise18"]))
        lat = create_backend(stt, cache_dir=tmp)
        thr = create_backend(stt.replace(openvino_streams=cores), cache_dir=tmp)  # the same cached model
        r_one, r_many = one.create_infer_request(), many.create_infer_request()
        images = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)  # the per-frame graph's one input
        image = images[:1]
        frames = synthetic_frames(h, w, 16, seed=0)
        lat_states = [lat.create_state() for _ in range(n)]
        thr_states = [thr.create_state() for _ in range(n)]
        alone = thr.create_state()
        step = [0]

        def video(camera: int) -> np.ndarray:
            return frames[(step[0] + 3 * camera) % len(frames)]

        def sequential() -> None:
            for c, st in enumerate(lat_states):
                lat.infer(video(c), st)

        def side_by_side() -> None:
            thr.infer_many([video(c) for c in range(n)], thr_states)
            step[0] += 1

        for _ in range(stt.key_frames):  # every ring buffer full before the measured rounds
            sequential()
            side_by_side()
            thr.infer(video(0), alone)
        got = timed_rounds({
            "bise_sequential": lambda: [r_one.infer({0: image}) for _ in range(n)],
            "bise_batch": lambda: r_many.infer({0: images}),
            "stt_sequential": sequential,
            "stt_streams": side_by_side,
            "stt_one_on_streams": lambda: thr.infer(video(0), alone),
        }, args.reps, args.warmup)
    print(f"\nOpenVINO {ov.get_version()} {args.precision}, {h}x{w}, {n} cameras, {cores} cores, median ms of "
          f"{args.reps} interleaved rounds:")
    print(f"  BiSe18 per-frame: {n} x batch 1 {got['bise_sequential']:.1f}, one batch of {n} {got['bise_batch']:.1f}: "
          f"throughput {got['bise_sequential'] / got['bise_batch']:.2f}x")
    print(f"  STT-BiSe18 step, {n} cameras: one after the other (openvino_streams 1: each step on {cores} threads) "
          f"{got['stt_sequential']:.1f} ({got['stt_sequential'] / n:.1f} each); batch_cameras with openvino_streams "
          f"{cores} (one thread each) {got['stt_streams']:.1f}: throughput "
          f"{got['stt_sequential'] / got['stt_streams']:.2f}x; "
          f"one camera alone on that backend {got['stt_one_on_streams']:.1f} (vs {got['stt_sequential'] / n:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
