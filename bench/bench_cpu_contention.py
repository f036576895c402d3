"""Inference latency while other processes load the CPU, by OpenMP wait policy and thread count.

A car's computer is shared. This starts ``--busy`` CPU-bound processes (niced, like a background
training or logging job), then measures the streaming segmenter's per-frame time in fresh
interpreters with OMP_WAIT_POLICY unset (libgomp's default), PASSIVE (what stt_node sets, see
stt_ros/ros/__init__.py), ACTIVE, and with one thread, side by side in one run; then the first two
again without the busy processes (whatever else runs on the machine still runs).

Example::

    python bench/bench_cpu_contention.py                 # stt_bise18 at 64x128, 2 busy processes
    python bench/bench_cpu_contention.py --net 256x512 --busy 1 --frames 20
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MEASURE = r"""
import json, sys, time
import numpy as np
import torch
from stt_ros.config import STTConfig
from stt_ros.runtime import StreamingSegmenter, create_backend
model, h, w, frames = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
seg = StreamingSegmenter(create_backend(STTConfig(model=model, input_height=h, input_width=w, key_frames=3)))
img = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
for _ in range(5):
    seg.process(img)
times = []
for _ in range(frames):
    t0 = time.perf_counter()
    seg.process(img)
    times.append((time.perf_counter() - t0) * 1e3)
print(json.dumps({"threads": torch.get_num_threads(), "median_ms": float(np.median(times)),
                  "p90_ms": float(np.percentile(times, 90))}))
"""

BUSY = "while True:\n    pass\n"

CASES = {  # name -> environment changes
    "OMP_WAIT_POLICY unset (libgomp default)": {"OMP_WAIT_POLICY": None},
    "OMP_WAIT_POLICY=PASSIVE (stt_node)": {"OMP_WAIT_POLICY": "PASSIVE"},
    "OMP_WAIT_POLICY=ACTIVE": {"OMP_WAIT_POLICY": "ACTIVE"},
    "OMP_NUM_THREADS=1": {"OMP_WAIT_POLICY": None, "OMP_NUM_THREADS": "1"},
}


def measure(args: argparse.Namespace, changes: dict[str, str | None]) -> dict:
    env = dict(os.environ)
    for k, v in changes.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    out = subprocess.run([sys.executable, "-c", MEASURE, args.model, str(args.net[0]), str(args.net[1]),
                          str(args.frames)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    if out.returncode:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="stt_bise18")
    p.add_argument("--net", default="64x128", help="network input HxW (64x128)")
    p.add_argument("--frames", type=int, default=30, help="timed frames per case (30)")
    p.add_argument("--busy", type=int, default=2, help="CPU-bound background processes (2)")
    p.add_argument("--nice", type=int, default=10, help="their niceness (10)")
    args = p.parse_args(argv)
    args.net = tuple(int(v) for v in args.net.split("x"))

    print(f"{args.model} at {args.net[0]}x{args.net[1]}, {os.cpu_count()} CPUs, median / p90 ms per frame over "
          f"{args.frames} frames")
    busy = [subprocess.Popen(["nice", "-n", str(args.nice), sys.executable, "-c", BUSY]) for _ in range(args.busy)]
    try:
        loaded = {name: measure(args, changes) for name, changes in CASES.items()}
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    idle = {name: measure(args, changes) for name, changes in list(CASES.items())[:2]}
    print(f"{'':42s} {args.busy} busy processes (nice {args.nice})    without them")
    for name in CASES:
        a = loaded[name]
        b = f"{idle[name]['median_ms']:7.1f} / {idle[name]['p90_ms']:7.1f}" if name in idle else ""
        print(f"{name:42s} {a['median_ms']:7.1f} / {a['p90_ms']:7.1f} ({a['threads']} threads)    {b}")
    default = loaded["OMP_WAIT_POLICY unset (libgomp default)"]["median_ms"]
    passive = loaded["OMP_WAIT_POLICY=PASSIVE (stt_node)"]["median_ms"]
    print(f"default policy vs PASSIVE under load: x{default / passive:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
