"""End-to-end latency of stt_node: camera publisher -> node (separate process) -> mask subscriber.

For each camera size the node runs in its own process on a private DDS domain (loopback only);
this process publishes frames and subscribes to the masks and TemporalConsistency messages. The
node runs the default engine (``--backend auto --precision auto``: OpenVINO bf16 on a CPU with
AVX512-BF16/AMX) on a seeded random checkpoint of ``--model`` (auto converts a checkpoint, while
random initialisation falls back to torch); the checkpoint and OpenVINO's compiled model are kept
in ``$TMPDIR/stt_bench_node_e2e`` for the next run. The report names the backend and precision the
node ran (from its start-up line), the CPU's flags and the load.

* lockstep: publish one frame, wait for its mask, repeat: end-to-end latency without queueing
  (median, p90), the node's own inference latency for the same frames (from its
  TemporalConsistency message), and the share spent outside the model: conversion, middleware
  both ways, TC flow and publishing.
* flood: publish as fast as the camera rate allows for a while: masks per second (throughput)
  and the node's drop count.
* rate (``--rate-hz 15 --count 300``): ``count`` frames on a fixed schedule, then the node drains:
  frames published, masks received, what the node counted (processed, dropped: latest frame wins,
  rejected) and what never reached it (DDS); the bound is the node's frame cycle (model + its
  outputs before the camera's next frame may start), so 0 drops needs a cycle under 1/rate.

Online temporal consistency (``tc_enabled``: optical flow and warped agreement, after the mask is out)
can be compared in the same run too (``--tc on off``): on a 2-core CPU its flow shares the cores with
the next frame's model.

Middleware settings are compared in the same run (``--middleware``), each given to both the
camera publisher and the node: ``default`` (Fast DDS defaults), ``shm`` (config/
fastdds_large_images.xml: a 64 MB shared-memory segment, what stt_node uses unless told not to),
``large_data`` (FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA).

Example::

    python bench/bench_node_e2e.py --sizes 512x1024 1024x2048 --frames 12 --middleware default shm
    python bench/bench_node_e2e.py --sizes 512x1024 --middleware shm --flood-s 0 --rate-hz 15 --count 300
    python bench/bench_node_e2e.py --sizes 512x1024 --middleware shm --flood-s 0 --rate-hz 15 --count 300 --tc on off
"""

from __future__ import annotations

import argparse
import json
import os
import re
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
CACHE = Path(tempfile.gettempdir()) / "stt_bench_node_e2e"  # the random checkpoint and OpenVINO's compiled model
CPU_FLAGS = ("avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
#: the node's start-up line: "<model> (<backend>, <precision>, <device> (<why>)) at HxW, ..."
STARTUP = re.compile(r"\]: (?P<model>\S+) \((?P<backend>[^,() ]+), (?P<precision>[^,() ]+), (?P<device>[^,() ]+) "
                     r"\((?P<why>.*)\)\) at \d+x\d+")


def cpu_summary() -> str:
    """The CPU's model and which of CPU_FLAGS it has (/proc/cpuinfo)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = next((set(line.split(":", 1)[1].split()) for line in info.splitlines() if line.startswith("flags")), set())
    return f"{name}; " + " ".join(f"{flag}={'yes' if flag in flags else 'no'}" for flag in CPU_FLAGS)


def load_summary() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def bench_weights(args: argparse.Namespace) -> str:
    """The checkpoint the node loads: --weights, or a seeded random one of --model (kept in CACHE, so
    OpenVINO's compiled model beside it is reused by the next run); "" for random initialisation."""
    if args.weights is not None:
        return "" if args.weights in ("", "random") else str(Path(args.weights).resolve())
    from stt_ros.config import STTConfig
    from stt_testing.node_harness import random_weights

    path = CACHE / f"{args.model}_seed0.safetensors"
    if not path.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        random_weights(path, STTConfig(model=args.model, input_height=args.net[0], input_width=args.net[1]), seed=0)
    return str(path)


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


def counters(tc) -> dict:  # noqa: ANN001 (a TemporalConsistency message, or None)
    names = ("frames_processed", "frames_dropped", "frames_rejected")
    return {n: (getattr(tc, n) if tc is not None else 0) for n in names}


def drain(client, quiet_s: float) -> dict:  # noqa: ANN001
    """Wait until no mask came for ``quiet_s`` and every mask's TemporalConsistency is in; the node's
    counters from the last of them."""
    last, seen = time.monotonic(), len(client.messages("/cam/mask"))
    while time.monotonic() - last < quiet_s:
        time.sleep(0.05)
        if len(client.messages("/cam/mask")) != seen:
            last, seen = time.monotonic(), len(client.messages("/cam/mask"))
    client.wait(lambda: len(client.messages("/cam/temporal_consistency")) >= len(client.messages("/cam/mask")), 5)
    return counters((client.messages("/cam/temporal_consistency") or [None])[-1])


def run_rate(client, publish, args: argparse.Namespace, cycle_ms: float) -> dict:  # noqa: ANN001
    """``args.count`` frames at ``args.rate_hz`` on a fixed schedule, then wait for the node to drain."""
    quiet = max(2.0, 3 * cycle_ms / 1e3)  # no new mask for this long: the node has drained
    before = drain(client, quiet)  # the flood's last frames are done and counted
    n0, late = len(client.messages("/cam/mask")), 0
    start = time.monotonic()
    for i in range(args.count):
        due = start + i / args.rate_hz
        now = time.monotonic()
        if now < due:
            time.sleep(due - now)
        elif now - due > 0.5 / args.rate_hz:
            late += 1  # this process could not keep the schedule (the CPU is shared)
        publish(i)
    sent_s = time.monotonic() - start
    after = drain(client, quiet)
    got = {k: after[k] - before[k] for k in after}
    masks = len(client.messages("/cam/mask")) - n0
    times = client.arrivals["/cam/mask"][n0:]
    cycle = (times[-1] - times[0]) * 1e3 / (len(times) - 1) if len(times) > 1 else float("nan")
    return {"rate_hz": args.rate_hz, "rate_cycle_ms": cycle, "rate_published": args.count, "rate_send_s": sent_s,
            "rate_late": late,
            "rate_masks": masks, "rate_processed": got["frames_processed"], "rate_dropped": got["frames_dropped"],
            "rate_rejected": got["frames_rejected"],
            "rate_never_reached_node": args.count - sum(got.values()), "rate_masks_per_s": masks / sent_s}


def run_case(size: tuple[int, int], transport: str, tc_on: bool, args: argparse.Namespace) -> dict:
    from stt_ros.msg import TemporalConsistency
    from stt_testing.node_harness import Client, NodeProcess, image_msg, textured_frames

    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    set_middleware(transport)
    h, w = size
    with tempfile.TemporaryDirectory() as tmp:
        params = Path(tmp) / "p.yaml"
        params.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
            "model": args.model, "input_height": args.net[0], "input_width": args.net[1],
            "backend": args.backend, "precision": args.precision, "weights": args.weights_path,
            "camera_names": ["cam"], "camera_topics": ["/cam/image"], "input_reliability": "reliable",
            "tc_enabled": tc_on}}}))
        node = NodeProcess(params, DOMAIN)
        client = Client(DOMAIN)
        try:
            if not node.wait_for_line("cameras:", 600):  # a first OpenVINO build takes a while
                raise RuntimeError(f"node did not start:\n{node.output}")
            line = next(line for line in node.lines if "cameras:" in line)
            m = STARTUP.search(line)
            ran = m.groupdict() if m else {"backend": "?", "precision": "?", "device": "?", "why": line}
            print(f"  {h}x{w} {transport} tc {'on' if tc_on else 'off'}: the node runs {ran['backend']} "
                  f"{ran['precision']} on {ran['device']} "
                  f"({ran['why']})", flush=True)
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
            if args.flood_s > 0:
                time.sleep(2 * statistics.median(e2e) / 1e3)
            masks = len(client.messages("/cam/mask")) - n0
            last = client.messages("/cam/temporal_consistency")[-1]
            rate = run_rate(client, publish, args, statistics.median(e2e)) if args.count > 0 else {}
        finally:
            client.close()
            node.stop()
    return {"size": f"{h}x{w}", "middleware": transport, "tc": "on" if tc_on else "off",
            "backend": ran["backend"], "precision": ran["precision"],
            "e2e_ms_median": statistics.median(e2e),
            "e2e_ms_p90": pctl(e2e, 90), "inference_ms_median": statistics.median(inference),
            "outside_ms_median": statistics.median(outside),
            "node_side_outside_ms_median": statistics.median(node_side), "outside_share": statistics.median(outside) /
            statistics.median(inference), "flood_published": i,
            "flood_masks_per_s": masks / args.flood_s if args.flood_s > 0 else float("nan"),
            "flood_dropped_total": last.frames_dropped, "e2e_ms": e2e, "inference_ms": inference, **rate,
            "load_after": os.getloadavg()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("Example::")[1],
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["512x1024", "1024x2048"], help="camera image sizes HxW")
    parser.add_argument("--net", default="512x1024", help="network input size HxW (default 512x1024)")
    parser.add_argument("--model", default="stt_bise18")
    parser.add_argument("--backend", default="auto", choices=["auto", "torch", "onnxruntime", "openvino", "tensorrt"],
                        help="the node's backend parameter (default auto: what a user who picks nothing gets)")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16", "int8"],
                        help="the node's precision parameter (default auto)")
    parser.add_argument("--weights", help="checkpoint for the node (default: a seeded random one of --model, kept in "
                        f"{CACHE}; 'random' = no weights, which backend auto runs on torch)")
    parser.add_argument("--frames", type=int, default=10, help="measured lockstep frames per case")
    parser.add_argument("--warmup", type=int, default=9, help="unmeasured frames first (fills the ring buffer)")
    parser.add_argument("--flood-s", type=float, default=5.0, help="seconds of flooding at --camera-hz")
    parser.add_argument("--camera-hz", type=float, default=30.0)
    parser.add_argument("--rate-hz", type=float, default=15.0, help="publishing rate of the rate phase")
    parser.add_argument("--count", type=int, default=0, help="frames of the rate phase (0: no rate phase)")
    parser.add_argument("--middleware", nargs="+", default=["default", "shm"], choices=["default", "shm", "large_data"],
                        help="middleware settings to compare (see above)")
    parser.add_argument("--tc", nargs="+", default=["on"], choices=["on", "off"],
                        help="online temporal consistency (the node's tc_enabled) in the cases compared (default on)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    args.net = tuple(int(v) for v in args.net.split("x"))
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes]
    args.weights_path = bench_weights(args)

    print(f"bench_node_e2e: {args.model} at {args.net[0]}x{args.net[1]}, backend={args.backend} "
          f"precision={args.precision}, weights {args.weights_path or 'random (no weights)'}; reliable QoS, lockstep "
          f"{args.frames} frames after {args.warmup} warm-up, flood {args.flood_s:.0f} s at {args.camera_hz:.0f} Hz"
          + (f", rate {args.count} frames at {args.rate_hz:g} Hz" if args.count > 0 else "")
          + f"; DDS domain {DOMAIN} on loopback")
    print(f"  CPU: {cpu_summary()}")
    print(f"  {load_summary()} at the start", flush=True)
    results = [run_case(size, t, tc == "on", args) for size in sizes for t in args.middleware for tc in args.tc]
    print(f"  {load_summary()} at the end")
    print(f"\n  {'camera':>10} {'middleware':>11} {'tc':>3} {'engine':>14} {'e2e med':>8} {'e2e p90':>8} {'model':>8} "
          f"{'outside':>8} {'share':>6} {'masks/s':>8} {'dropped':>8}")
    flooded = args.flood_s > 0  # without a flood phase its two columns have nothing to show
    for r in results:
        print(f"  {r['size']:>10} {r['middleware']:>11} {r['tc']:>3} {r['backend'] + ' ' + r['precision']:>14} "
              f"{r['e2e_ms_median']:>8.1f} {r['e2e_ms_p90']:>8.1f} "
              f"{r['inference_ms_median']:>8.1f} {r['outside_ms_median']:>8.1f} {100 * r['outside_share']:>5.1f}% "
              + (f"{r['flood_masks_per_s']:>8.2f} {r['flood_dropped_total']:>8d}" if flooded else f"{'-':>8} {'-':>8}"))
    print("  (ms; 'model' = the node's inference latency for the same frames, its resize to the network included; "
          "'outside' = end-to-end minus model: middleware both ways, conversion, hand-offs, publishing; "
          "masks/s and dropped: the flood phase)")
    for r in results:
        if r["tc"] == "off":
            continue
        print(f"  {r['size']} {r['middleware']}: the node publishes its TemporalConsistency message "
              f"{r['node_side_outside_ms_median']:.1f} ms (median) after the frame's stamp beyond its model time: "
              "input transport, conversion, waiting, the mask's publishing and then the TC flow, which runs "
              "after the mask is out (so this can exceed the time outside the model on the mask's way)")
    for r in results:
        if r["size"] == f"{args.net[0]}x{args.net[1]}":
            ok = r["outside_share"] < 0.10
            print(f"RESULT node overhead outside the model at {r['size']} ({r['middleware']}, tc {r['tc']}): "
                  f"{100 * r['outside_share']:.1f}% of model time (target < 10%) {'met' if ok else 'NOT met'}")
    for r in results:
        if "rate_published" not in r:
            continue
        bound = 1e3 / r["rate_hz"]
        print(f"RATE {r['size']} {r['middleware']} tc {r['tc']} {r['backend']} {r['precision']}: "
              f"{r['rate_published']} frames "
              f"published at {r['rate_hz']:g} Hz in {r['rate_send_s']:.1f} s ({r['rate_late']} late), "
              f"{r['rate_masks']} masks received ({r['rate_masks_per_s']:.2f}/s); the node processed "
              f"{r['rate_processed']}, dropped {r['rate_dropped']}, rejected {r['rate_rejected']}; "
              f"{r['rate_never_reached_node']} never reached it")
        ok = r["rate_dropped"] == 0 and r["rate_never_reached_node"] == 0
        print(f"  0 drops needs the node's frame cycle under {bound:.1f} ms; it was {r['rate_cycle_ms']:.1f} ms per "
              f"mask (model {r['inference_ms_median']:.1f} ms in lockstep, the rest its outputs and hand-offs), so it "
              f"served {100 * r['rate_processed'] / max(1, r['rate_published']):.0f}% of the frames: "
              f"{'met' if ok else 'NOT met'}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
