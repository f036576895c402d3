#!/usr/bin/env python3
"""Several cameras through one stt_node: masks per second with and without cross-camera batching.

``--cameras`` camera publishers (this process, a private DDS domain on loopback) each send frames at
``--rate-hz`` for ``--seconds``; the node (its own process, the default engine: OpenVINO bf16 on a CPU
with AVX512-BF16/AMX, from a seeded random checkpoint kept in ``$TMPDIR/stt_bench_node_e2e``) runs one
case after the other on the same frames: ``batch_cameras`` off, and on with ``openvino_streams`` 1 and
the number of cores (``--cases``). Per case: masks received per second over all cameras, the node's
processed / dropped counts (latest frame wins) and the median inference latency it reports.

With every camera sending faster than the model can serve them all, the node is saturated and masks
per second is its throughput. This is a benchmark, not a test: it reports, it never fails on a number.

Example::

    python bench/bench_node_cameras.py --cameras 4 --rate-hz 15 --seconds 20
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout, not an installed copy
sys.path.insert(0, str(ROOT / "test"))  # the stt_testing helper package
sys.path.insert(0, str(ROOT / "bench"))

from bench_node_e2e import STARTUP, bench_weights, cpu_summary, load_summary, set_middleware  # noqa: E402

DOMAIN = int(os.environ.get("STT_BENCH_DOMAIN", "88"))
CASES = ("sequential", "batched", "batched-streams")


def run_case(case: str, args: argparse.Namespace) -> dict:
    from sensor_msgs.msg import Image

    from stt_ros.msg import TemporalConsistency
    from stt_testing.node_harness import Client, NodeProcess, image_msg, textured_frames, write_params

    h, w = args.size
    cams = [f"cam{i}" for i in range(args.cameras)]
    streams = (os.cpu_count() or 1) if case == "batched-streams" else 1
    with tempfile.TemporaryDirectory() as tmp:
        params = write_params(
            Path(tmp) / "p.yaml", model=args.model, input_height=h, input_width=w, backend=args.backend,
            precision=args.precision, weights=args.weights_path, camera_names=cams,
            camera_topics=[f"/{c}/image" for c in cams], input_reliability="reliable",
            batch_cameras=case != "sequential", openvino_streams=streams, **args.param)
        node = NodeProcess(params, DOMAIN)
        client = Client(DOMAIN)
        try:
            if not node.wait_for_line("cameras:", 600):
                raise RuntimeError(f"node did not start:\n{node.output}")
            line = next(line for line in node.lines if "cameras:" in line)
            m = STARTUP.search(line)
            ran = f"{m['backend']} {m['precision']}" if m else "?"
            print(f"  {case}: the node runs {ran}, batch_cameras={case != 'sequential'}, openvino_streams={streams}",
                  flush=True)
            pubs = {}
            for c in cams:
                client.subscribe(Image, f"/{c}/mask")
                client.subscribe(TemporalConsistency, f"/{c}/temporal_consistency")
                pubs[c] = client.publisher(Image, f"/{c}/image")
                if not client.wait_matched(f"/{c}/image", 30):
                    raise RuntimeError(f"node never subscribed to /{c}/image")
            frames = {c: [image_msg(f, 0, c) for f in textured_frames(8, h, w, seed=i, step=4)]
                      for i, c in enumerate(cams)}
            time.sleep(0.5)

            def send_round(i: int) -> None:
                t = time.time()
                for c in cams:
                    msg = frames[c][i % len(frames[c])]
                    msg.header.stamp.sec, msg.header.stamp.nanosec = int(t), int((t % 1) * 1e9)
                    pubs[c].publish(msg)

            # warm-up: every camera's ring buffer full, the engine's first runs done
            for i in range(args.warmup):
                n = [len(client.messages(f"/{c}/mask")) for c in cams]
                send_round(i)
                client.wait(lambda n=n: all(len(client.messages(f"/{c}/mask")) > k
                                            for c, k in zip(cams, n, strict=True)), 60)
            n0 = {c: len(client.messages(f"/{c}/mask")) for c in cams}
            tc0 = {c: client.messages(f"/{c}/temporal_consistency")[-1] for c in cams}
            start = time.monotonic()
            i = 0
            while time.monotonic() - start < args.seconds:
                send_round(args.warmup + i)
                i += 1
                time.sleep(max(0.0, start + i / args.rate_hz - time.monotonic()))
            sent_s = time.monotonic() - start
            time.sleep(2.0)  # the last steps finish
            masks = sum(len(client.messages(f"/{c}/mask")) - n0[c] for c in cams)
            last = {c: client.messages(f"/{c}/temporal_consistency")[-1] for c in cams}
            latency = [tc.inference_latency_ms for c in cams
                       for tc in client.messages(f"/{c}/temporal_consistency")[args.warmup:]]
        finally:
            client.close()
            node.stop()
    return {"case": case, "engine": ran, "streams": streams, "sent_per_camera": i, "masks": masks,
            "masks_per_s": masks / sent_s,
            "dropped": sum(last[c].frames_dropped - tc0[c].frames_dropped for c in cams),
            "processed": sum(last[c].frames_processed - tc0[c].frames_processed for c in cams),
            "inference_ms_median": statistics.median(latency) if latency else float("nan")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("Example::")[1],
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--size", default="512x1024", help="camera and network size HxW (default 512x1024)")
    parser.add_argument("--rate-hz", type=float, default=15.0, help="frames per second of each camera")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per case")
    parser.add_argument("--warmup", type=int, default=9, help="lockstep rounds first (fill the ring buffers)")
    parser.add_argument("--model", default="stt_bise18")
    parser.add_argument("--backend", default="auto", choices=["auto", "torch", "onnxruntime", "openvino", "tensorrt"])
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16", "int8"])
    parser.add_argument("--weights", help="checkpoint (default: bench_node_e2e's seeded random one)")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--param", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="more node parameters for every case, e.g. tc_enabled=false")
    args = parser.parse_args(argv)
    pairs = [item.partition("=") for item in args.param]
    if any(not sep for _, sep, _ in pairs):
        parser.error("--param takes KEY=VALUE")
    args.param = {key: yaml.safe_load(value) for key, _, value in pairs}
    args.size = tuple(int(v) for v in args.size.split("x"))
    args.net = args.size
    args.weights_path = bench_weights(args)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    set_middleware("shm")
    print(f"bench_node_cameras: {args.cameras} cameras of {args.size[0]}x{args.size[1]} at {args.rate_hz:g} Hz each, "
          f"{args.seconds:g} s per case, {args.model} backend={args.backend} precision={args.precision}; DDS domain "
          f"{DOMAIN} on loopback, shared-memory profile" + (f"; node parameters {args.param}" if args.param else ""))
    print(f"  CPU: {cpu_summary()}")
    print(f"  {load_summary()} at the start", flush=True)
    results = [run_case(case, args) for case in args.cases]
    print(f"  {load_summary()} at the end\n")
    print(f"  {'case':<16} {'engine':<14} {'streams':>7} {'masks/s':>8} {'processed':>9} {'dropped':>8} "
          f"{'model ms':>9}")
    for r in results:
        print(f"  {r['case']:<16} {r['engine']:<14} {r['streams']:>7} {r['masks_per_s']:>8.2f} {r['processed']:>9} "
              f"{r['dropped']:>8} {r['inference_ms_median']:>9.1f}")
    base = next((r for r in results if r["case"] == "sequential"), None)
    if base:
        for r in results:
            if r is not base:
                print(f"RESULT {r['case']}: {r['masks_per_s'] / base['masks_per_s']:.2f}x the masks per second of "
                      f"batch_cameras off ({args.cameras} cameras, {args.size[0]}x{args.size[1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
