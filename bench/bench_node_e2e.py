"""End-to-end latency of stt_node: camera publisher -> node (separate process) -> mask subscriber.

For each camera size the node runs in its own process on a private DDS domain (loopback only);
this process publishes frames and subscribes to the masks and TemporalConsistency messages.

* lockstep: publish one frame, wait for its mask, repeat: end-to-end latency without queueing
  (median, p90), the node's own inference latency for the same frames (from its
  TemporalConsistency message), and the share spent outside the model: conversion, middleware
  both ways, TC flow and publishing.
* flood: publish as fast as the camera rate allows for a while: masks per second (throughput)
  and the node's drop count.

Middleware settings are compared in the same run (``--middleware``), each given to both the
camera publisher and the node: ``default`` (Fast DDS defaults), ``shm`` (config/
fastdds_large_images.xml: a 64 MB shared-memory segment, what stt_node uses unless told not to),
``large_data`` (FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA).

Example::

    python bench/bench_node_e2e.py --sizes 512x1024 1024x2048 --frames 12 --middleware default shm
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout, not an installed copy
sys.path.insert(0, str(ROOT / "test"))  # the stt_testing helper package

DOMAIN = int(os.environ.get("STT_BENCH_DOMAIN", "87"))


def pctl(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def set_middleware(kind: str) -> None:
    """Environment for this process and the node it starts (read when a DDS participant is created)."""
    for var in ("FASTDDS_BUILTIN_TRANSPORTS", "FASTDDS_DEFAULT_PROFILES_FILE", "STT_FASTDDS_PROFILE"):
        os.environ.pop(var, None)
    if kind == "default":
        os.environ["STT_FASTDDS_PROFILE"] = "none"
    elif kind == "shm":
        os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(ROOT / "config" / "fastdds_large_images.xml")
    elif kind == "large_data":
        os.environ["FASTDDS_BUILTIN_TRANSPORTS"] = "LARGE_DATA"
        os.environ["STT_FASTDDS_PROFILE"] = "none"
    else:
        raise ValueError(f"unknown middleware setting {kind!r}")


def run_case(size: tuple[int, int], transport: str, args: argparse.Namespace) -> dict:
    from stt_ros.msg import TemporalConsistency
    from stt_testing.node_harness import Client, NodeProcess, image_msg, textured_frames

    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    set_middleware(transport)
    h, w = size
    with tempfile.TemporaryDirectory() as tmp:
        params = Path(tmp) / "p.yaml"
        params.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
            "model": args.model, "input_height": args.net[0], "input_width": args.net[1],
            "camera_names": ["cam"], "camera_topics": ["/cam/image"], "input_reliability": "reliable"}}}))
        node = NodeProcess(params, DOMAIN)
        client = Client(DOMAIN)
        try:
            if not node.wait_for_line("cameras:", 120):
                raise RuntimeError(f"node did not start:\n{node.output}")
            from sensor_msgs.msg import Image

            client.subscribe(Image, "/cam/mask")
            client.subscribe(TemporalConsistency, "/cam/temporal_consistency")
            frames = [image_msg(f, 0, "cam") for f in textured_frames(8, h, w, seed=0, step=4)]
            pub = client.publisher(Image, "/cam/image")
            if not client.wait_matched("/cam/image", 30):
                raise RuntimeError("node never subscribed")
            time.sleep(0.5)

            def publish(i: int) -> float:
                msg = frames[i % len(frames)]
                t = time.time()
                msg.header.stamp.sec, msg.header.stamp.nanosec = int(t), int((t % 1) * 1e9)
                pub.publish(msg)
                return t

            # lockstep
            e2e, inference, node_side = [], [], []
            for i in range(args.warmup + args.frames):
                n = len(client.messages("/cam/mask"))
                sent = publish(i)
                if not client.wait(lambda n=n: len(client.messages("/cam/mask")) > n, 60):
                    raise RuntimeError("no mask within 60 s")
                arrived = client.arrivals["/cam/mask"][n]  # taken in the subscription callback
                client.wait(lambda n=n: len(client.messages("/cam/temporal_consistency")) > n, 10)
                if i >= args.warmup:
                    e2e.append((arrived - sent) * 1e3)
                    tc = client.messages("/cam/temporal_consistency")[-1]
                    inference.append(tc.inference_latency_ms)
                    node_side.append(tc.end_to_end_latency_ms - tc.inference_latency_ms)
            outside = [a - b for a, b in zip(e2e, inference, strict=True)]

            # flood at the camera rate
            n0 = len(client.messages("/cam/mask"))
            start = time.monotonic()
            i = 0
            while time.monotonic() - start < args.flood_s:
                publish(i)
                i += 1
                time.sleep(1.0 / args.camera_hz)
            time.sleep(2 * statistics.median(e2e) / 1e3)
            masks = len(client.messages("/cam/mask")) - n0
            last = client.messages("/cam/temporal_consistency")[-1]
        finally:
            client.close()
            node.stop()
    return {"size": f"{h}x{w}", "middleware": transport, "e2e_ms_median": statistics.median(e2e),
            "e2e_ms_p90": pctl(e2e, 90), "inference_ms_median": statistics.median(inference),
            "outside_ms_median": statistics.median(outside),
            "node_side_outside_ms_median": statistics.median(node_side), "outside_share": statistics.median(outside) /
            statistics.median(inference), "flood_published": i, "flood_masks_per_s": masks / args.flood_s,
            "flood_dropped_total": last.frames_dropped, "e2e_ms": e2e, "inference_ms": inference}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("Example::")[1],
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["512x1024", "1024x2048"], help="camera image sizes HxW")
    parser.add_argument("--net", default="512x1024", help="network input size HxW (default 512x1024)")
    parser.add_argument("--model", default="stt_bise18")
    parser.add_argument("--frames", type=int, default=10, help="measured lockstep frames per case")
    parser.add_argument("--warmup", type=int, default=9, help="unmeasured frames first (fills the ring buffer)")
    parser.add_argument("--flood-s", type=float, default=5.0, help="seconds of flooding at --camera-hz")
    parser.add_argument("--camera-hz", type=float, default=30.0)
    parser.add_argument("--middleware", nargs="+", default=["default", "shm"], choices=["default", "shm", "large_data"],
                        help="middleware settings to compare (see above)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    args.net = tuple(int(v) for v in args.net.split("x"))
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes]

    print(f"bench_node_e2e: {args.model} at {args.net[0]}x{args.net[1]} on CPU ({os.cpu_count()} cores), "
          f"reliable QoS, lockstep {args.frames} frames after {args.warmup} warm-up, flood {args.flood_s:.0f} s at "
          f"{args.camera_hz:.0f} Hz; DDS domain {DOMAIN} on loopback")
    results = [run_case(size, t, args) for size in sizes for t in args.middleware]
    print(f"\n  {'camera':>10} {'middleware':>11} {'e2e med':>8} {'e2e p90':>8} {'model':>8} {'outside':>8} "
          f"{'share':>6} {'masks/s':>8} {'dropped':>8}")
    for r in results:
        print(f"  {r['size']:>10} {r['middleware']:>11} {r['e2e_ms_median']:>8.1f} {r['e2e_ms_p90']:>8.1f} "
              f"{r['inference_ms_median']:>8.1f} {r['outside_ms_median']:>8.1f} {100 * r['outside_share']:>5.1f}% "
              f"{r['flood_masks_per_s']:>8.2f} {r['flood_dropped_total']:>8d}")
    print("  (ms; 'model' = the node's inference latency for the same frames; 'outside' = end-to-end minus model: "
          "conversion, middleware both ways, TC, publishing)")
    for r in results:
        print(f"  {r['size']} {r['middleware']}: of the {r['outside_ms_median']:.1f} ms outside the model, "
              f"{r['node_side_outside_ms_median']:.1f} ms pass before the node publishes its TemporalConsistency "
              "message (input transport, conversion, waiting, mask publishing, TC); the rest is the mask's way back")
    for r in results:
        if r["size"] == f"{args.net[0]}x{args.net[1]}":
            ok = r["outside_share"] < 0.10
            print(f"RESULT node overhead outside the model at {r['size']} ({r['middleware']}): "
                  f"{100 * r['outside_share']:.1f}% of model time (target < 10%) {'met' if ok else 'NOT met'}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
