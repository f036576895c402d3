#!/usr/bin/env python3
"""What the one temporal-consistency definition costs per frame, beside the alternatives.

TC as the node and stt-bag-eval compute it (stt_ros.runtime.camera.CameraPipeline.consistency):
DIS optical flow between the previous and the current network-size input image, then the previous
class map warped onto the current one (nearest) and compared (confusion matrix). This times exactly
those calls (``FlowEstimator.backward`` + ``pair_agreement``) on a synthetic drive at network sizes
512x1024 and 1024x2048, for the shipped setting (DIS ``fast`` on images scaled by 0.5) and for the
settings it replaced (the node's old ``ultrafast`` at 0.5; the bag evaluation's old ``fast`` at full
camera size), plus ETC's protocol (``etc_pair``) at the same size. Medians of --reps runs.

This is a benchmark, not a test. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_stt_step import synthetic_frames  # noqa: E402

from stt_ros.metrics import TC_FLOW_PRESET, TC_FLOW_SCALE, FlowEstimator, etc_pair, pair_agreement  # noqa: E402

SETTINGS = [(f"{TC_FLOW_PRESET} x{TC_FLOW_SCALE} (shipped)", TC_FLOW_PRESET, TC_FLOW_SCALE),
            ("ultrafast x0.5 (old node)", "ultrafast", 0.5), ("fast x1.0 (old stt-bag-eval)", "fast", 1.0)]


def class_map(rgb: np.ndarray, classes: int = 19) -> np.ndarray:
    """A piecewise-constant class map that moves with the image (quantised colour)."""
    return (rgb[..., 0].astype(np.uint16) * classes // 256).astype(np.uint8)


def median_ms(fn, reps: int) -> float:  # noqa: ANN001
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--sizes", nargs="+", default=["512x1024", "1024x2048"], help="network sizes HxW")
    args = p.parse_args(argv)
    import cv2

    flags = [f for f in ("avx512f", "avx512_bf16", "amx_bf16", "amx_int8")
             if f in Path("/proc/cpuinfo").read_text()] if Path("/proc/cpuinfo").exists() else []
    print(f"CPU flags: {' '.join(flags) or 'none of avx512f/avx512_bf16/amx'}; OpenCV {cv2.__version__}, "
          f"{cv2.getNumThreads()} threads")
    for size in args.sizes:
        h, w = map(int, size.split("x"))
        prev, cur = synthetic_frames(h, w, 2, seed=0)
        pm, cm = class_map(prev), class_map(cur)
        print(f"\nnetwork size {h}x{w}: TC of one frame pair, median of {args.reps}")
        for label, preset, scale in SETTINGS:
            flow = FlowEstimator(preset, scale)
            fl = flow.backward(prev, cur)
            flow_ms = median_ms(partial(flow.backward, prev, cur), args.reps)
            agree_ms = median_ms(partial(pair_agreement, pm, cm, fl, 19), args.reps)
            print(f"  {label:32s} flow {flow_ms:6.1f} ms + warp/compare {agree_ms:5.1f} ms = "
                  f"{flow_ms + agree_ms:6.1f} ms")
        flow = FlowEstimator(TC_FLOW_PRESET, TC_FLOW_SCALE)
        fwd = flow.backward(cur, prev)
        etc_ms = median_ms(partial(etc_pair, pm, cm, fwd, 19), args.reps)
        print(f"  {'ETC protocol (etc_pair)':32s} warp/compare {etc_ms:5.1f} ms (+ the same flow)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
