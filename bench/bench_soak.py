"""Soak benchmark of stt_node: thousands of frames through the node (a subprocess, real DDS on
loopback) with faults injected on a schedule, reporting memory, latency drift and whether the
node's counters match what was injected.

One camera publishes frames in lockstep (publish, wait for the node's temporal_consistency
answer) with, spread over the run after the warm-up:

* stamp jumps (alternately 30 s back, like a bag looping, and 30 s forward, > max_frame_gap_s):
  each must reset the ring buffer exactly once;
* resolution changes (camera size toggles): each must reset exactly once;
* malformed frames (unsupported encoding, truncated data, a corrupt huge header): each must be
  rejected and counted, never processed;
* bursts of frames published back to back: the node keeps the newest, drops and counts the rest.

Reported: the node's resident memory (VmRSS from /proc/<pid>/status) after the warm-up and at the
end (target: growth under 2 %), inference and end-to-end latency of the first vs the last
``--window`` frames after the warm-up, throughput, and the counter checks: resets == injected
jumps + size changes, rejected == injected bad frames, received == published and received ==
processed + dropped + rejected.

Example (the figures in docs/ROBUSTNESS.md)::

    python bench/bench_soak.py                      # 5000 frames, 64x128 network, ~4 min on 2 cores
    python bench/bench_soak.py --frames 500 --window 100 --warmup 100    # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout, not an installed copy
sys.path.insert(0, str(ROOT / "test"))  # the stt_testing helper package


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=5000, help="frames to publish in all (default 5000)")
    p.add_argument("--warmup", type=int, default=300, help="frames before the baseline RSS and latency (300)")
    p.add_argument("--window", type=int, default=500, help="frames in the first/last latency windows (500)")
    p.add_argument("--model", default="stt_bise18", help="zoo model, random weights (stt_bise18)")
    p.add_argument("--net", default="64x128", help="network input HxW (64x128)")
    p.add_argument("--size", default="64x128", help="camera image HxW (64x128); resolution changes toggle "
                   "to 3/4 of it")
    p.add_argument("--key-frames", type=int, default=3, help="T, ring buffer length (3)")
    p.add_argument("--jumps", type=int, default=10, help="stamp jumps to inject (10)")
    p.add_argument("--resizes", type=int, default=6, help="resolution changes to inject (6)")
    p.add_argument("--bad", type=int, default=12, help="malformed frames to inject (12)")
    p.add_argument("--bursts", type=int, default=20, help="bursts of back-to-back frames (20)")
    p.add_argument("--burst-size", type=int, default=6, help="frames per burst (6)")
    p.add_argument("--domain", type=int, default=int(os.environ.get("STT_BENCH_DOMAIN", "173")),
                   help="ROS_DOMAIN_ID of the node and this process (173; env STT_BENCH_DOMAIN)")
    p.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS for the node (torch's intra-op "
                   "threads); 0 = the node's default")
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    args.net = tuple(int(v) for v in args.net.split("x"))
    args.size = tuple(int(v) for v in args.size.split("x"))
    if args.frames < args.warmup + 2 * args.window:
        p.error(f"--frames {args.frames} must be at least --warmup + 2 * --window = {args.warmup + 2 * args.window}")
    return args


def spread(count: int, start: int, stop: int, offset: int) -> set[int]:
    """``count`` frame indices evenly spread over [start, stop), shifted by ``offset`` so that
    different kinds of events do not land on the same frame."""
    if count <= 0:
        return set()
    step = (stop - start) / count
    return {start + int(step * k + step / 2) + offset for k in range(count)}


class Counter:
    """Subscription that keeps only what the benchmark needs (no per-message storage)."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.tcs: list = []  # (arrival time, stamp, inference ms, counters)
        self.masks = 0
        self.diag: dict[str, str] = {}

    def on_tc(self, msg) -> None:  # noqa: ANN001
        now = time.perf_counter()
        with self.lock:
            self.tcs.append((now, msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9, msg.inference_latency_ms,
                             msg.end_to_end_latency_ms, msg.buffer_resets, msg.ring_buffer_fill))
            self.lock.notify_all()

    def on_mask(self, msg) -> None:  # noqa: ANN001
        with self.lock:
            self.masks += 1

    def on_diag(self, msg) -> None:  # noqa: ANN001
        for s in msg.status:
            if s.hardware_id == "cam":
                with self.lock:
                    self.diag = {kv.key: kv.value for kv in s.values}

    def n(self) -> int:
        with self.lock:
            return len(self.tcs)

    def wait(self, predicate, timeout: float) -> bool:  # noqa: ANN001
        """Wake as soon as an answer arrives that makes ``predicate(tcs)`` true (no polling delay)."""
        with self.lock:
            return self.lock.wait_for(lambda: predicate(self.tcs), timeout)


def run(args: argparse.Namespace) -> dict:
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ["ROS_DOMAIN_ID"] = str(args.domain)
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # inherited by the node subprocess
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from stt_ros.msg import TemporalConsistency
    from stt_testing.node_harness import Client, NodeProcess, image_msg, textured_frames, write_params

    h, w = args.size
    small = (max(8, h * 3 // 4), max(8, w * 3 // 4))
    frames = {size: [image_msg(f, 0, "cam") for f in textured_frames(16, *size, seed=1)] for size in (args.size, small)}
    bad_kinds = ["encoding", "truncated", "huge"]

    def bad_frame(k: int) -> Image:
        msg = image_msg(textured_frames(1, *args.size, seed=2)[0], 0, "cam")
        kind = bad_kinds[k % len(bad_kinds)]
        if kind == "encoding":
            msg.encoding = "32FC1"
        elif kind == "truncated":
            msg.data = bytes(msg.data)[: len(msg.data) // 2]
        else:
            msg.height = msg.width = 2**31
        return msg

    start, stop = args.warmup, args.frames - args.window
    jump_at = spread(args.jumps, start, stop, 0)
    resize_at = spread(args.resizes, start, stop, 3)
    bad_at = spread(args.bad, start, stop, 7)
    burst_at = spread(args.bursts, start, stop, 11)

    with tempfile.TemporaryDirectory() as tmp:
        params = write_params(Path(tmp) / "p.yaml", model=args.model, input_height=args.net[0],
                              input_width=args.net[1], key_frames=args.key_frames, camera_names=["cam"],
                              camera_topics=["/cam/image"], input_reliability="reliable", input_depth=10,
                              max_frame_gap_s=1.0, diagnostics_period_s=0.25)
        node = NodeProcess(params, args.domain)
        client = Client(args.domain)
        counter = Counter()
        try:
            if not node.wait_for_line("cameras:", 120):
                raise RuntimeError(f"node did not start:\n{node.output}")
            qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
            client.node.create_subscription(TemporalConsistency, "/cam/temporal_consistency", counter.on_tc, qos)
            client.node.create_subscription(Image, "/cam/mask", counter.on_mask, qos)
            client.node.create_subscription(DiagnosticArray, "/diagnostics", counter.on_diag, 10)
            pub = client.publisher(Image, "/cam/image")
            if not client.wait_matched("/cam/image", 30):
                raise RuntimeError("node never subscribed")
            time.sleep(0.5)

            clock = 1000.0  # camera time: 20 Hz, shifted by the injected jumps
            size = args.size
            published = expected_resets = injected_bad = burst_frames = 0
            lockstep: list[tuple[int, float, int]] = []  # (frame index, publish time, tc index)
            rss: list[tuple[int, int]] = []
            t_start = time.perf_counter()
            rss_after_warmup = None
            i = 0

            def publish(msg: Image) -> float:
                nonlocal clock, published
                clock += 0.05
                ns = round(clock * 1e9)
                msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(ns, 1_000_000_000)
                t = time.perf_counter()
                pub.publish(msg)
                published += 1
                return t

            def wait_tcs(n: int, what: str) -> None:
                if not counter.wait(lambda tcs: len(tcs) >= n, 60):
                    raise RuntimeError(f"no answer to {what} within 60 s (node alive: {node.proc.poll() is None})")

            while published < args.frames:
                if i in jump_at:
                    clock += -30.0 if len([j for j in jump_at if j < i]) % 2 == 0 else 30.0
                    expected_resets += 1
                if i in resize_at:
                    size = small if size == args.size else args.size
                    expected_resets += 1
                if i in bad_at:
                    before = int(counter.diag.get("frames_rejected", "0"))
                    pub.publish(bad_frame(injected_bad))
                    injected_bad += 1
                    if not client.wait(lambda b=before: int(counter.diag.get("frames_rejected", "0")) > b, 30):
                        raise RuntimeError("a malformed frame was not counted as rejected within 30 s")
                pool = frames[size]
                if i in burst_at:
                    n_before = counter.n()
                    count = min(args.burst_size, args.frames - published)
                    for k in range(count):
                        publish(pool[(i + k) % len(pool)])
                    burst_frames += count
                    # the newest frame of a burst is always processed; wait for its answer
                    target = round(clock, 3)
                    answered = lambda tcs, n=n_before, t=target: len(tcs) > n and round(tcs[-1][1], 3) == t
                    if not counter.wait(answered, 60):
                        raise RuntimeError("no answer to a burst's last frame within 60 s")
                else:
                    n_before = counter.n()
                    t = publish(pool[i % len(pool)])
                    wait_tcs(n_before + 1, f"frame {i}")
                    lockstep.append((i, t, n_before))
                i += 1
                if published >= args.warmup and rss_after_warmup is None:
                    rss_after_warmup = node.rss_kb()
                if i % 100 == 0:
                    rss.append((published, node.rss_kb()))
                    if i % 500 == 0:
                        print(f"  {published} frames in {time.perf_counter() - t_start:.0f} s, node RSS "
                              f"{rss[-1][1] / 1024:.1f} MB", flush=True)
            elapsed = time.perf_counter() - t_start
            rss_end = node.rss_kb()
            # settle: let the last diagnostics arrive
            client.wait(lambda: int(counter.diag.get("frames_received", "0")) == published + injected_bad, 10)
            time.sleep(0.6)
            diag = dict(counter.diag)
        finally:
            client.close()
            code = node.stop()
        node_alive = code == 0 and "Traceback" not in node.output

    with counter.lock:
        tcs = list(counter.tcs)
    # latency of lockstep frames: first and last windows after the warm-up
    measured = [(idx, t_pub, k) for idx, t_pub, k in lockstep if idx >= args.warmup and k < len(tcs)]
    first, last = measured[: args.window], measured[-args.window:]

    def latencies(rows: list) -> dict[str, float]:
        e2e = [(tcs[k][0] - t_pub) * 1e3 for _, t_pub, k in rows]
        inf = [tcs[k][2] for _, _, k in rows]
        return {"inference_ms_median": statistics.median(inf), "inference_ms_p90": float(np.percentile(inf, 90)),
                "end_to_end_ms_median": statistics.median(e2e), "end_to_end_ms_p90": float(np.percentile(e2e, 90))}

    counts = {k: int(diag.get(k, "-1")) for k in ("frames_received", "frames_processed", "frames_dropped",
                                                  "frames_rejected", "buffer_resets")}
    result = {
        "frames_published": published, "bad_frames_injected": injected_bad, "lockstep_frames": len(lockstep),
        "burst_frames": burst_frames, "bursts": len(burst_at), "stamp_jumps": len(jump_at),
        "size_changes": len(resize_at), "expected_resets": expected_resets, "counters": counts,
        "masks_received": counter.masks, "elapsed_s": elapsed, "frames_per_s": published / elapsed,
        "rss_mb_after_warmup": rss_after_warmup / 1024, "rss_mb_end": rss_end / 1024,
        "rss_mb_max": max(r for _, r in rss) / 1024 if rss else float("nan"),
        "rss_growth_pct": 100.0 * (rss_end - rss_after_warmup) / rss_after_warmup,
        "rss_samples": rss, "latency_first": latencies(first), "latency_last": latencies(last),
        "node_exit_clean": node_alive, "config": {k: v for k, v in vars(args).items() if k != "json"},
    }
    result["checks"] = {
        "resets == stamp jumps + size changes": counts["buffer_resets"] == expected_resets,
        "rejected == bad frames": counts["frames_rejected"] == injected_bad,
        "received == published + bad frames": counts["frames_received"] == published + injected_bad,
        "received == processed + dropped + rejected": counts["frames_received"] == (
            counts["frames_processed"] + counts["frames_dropped"] + counts["frames_rejected"]),
        "every lockstep frame answered": len(measured) + sum(1 for idx, _, _ in lockstep if idx < args.warmup)
        == len(lockstep),
        "RSS growth after warm-up < 2 %": result["rss_growth_pct"] < 2.0,
        "node exited cleanly": node_alive,
    }
    return result


def report(r: dict, args: argparse.Namespace) -> None:
    c = r["counters"]
    lf, ll = r["latency_first"], r["latency_last"]
    print(f"\nstt_node soak: {args.model} at {args.net[0]}x{args.net[1]}, T={args.key_frames}, camera "
          f"{args.size[0]}x{args.size[1]}, {r['frames_published']} frames in {r['elapsed_s']:.0f} s "
          f"({r['frames_per_s']:.1f} frames/s)")
    print(f"injected: {r['stamp_jumps']} stamp jumps, {r['size_changes']} size changes, {r['bad_frames_injected']} "
          f"malformed frames, {r['bursts']} bursts ({r['burst_frames']} frames)")
    print(f"node counters: received {c['frames_received']}, processed {c['frames_processed']}, dropped "
          f"{c['frames_dropped']}, rejected {c['frames_rejected']}, resets {c['buffer_resets']} "
          f"(expected {r['expected_resets']}); masks received {r['masks_received']}")
    print(f"RSS: {r['rss_mb_after_warmup']:.1f} MB after {args.warmup} warm-up frames, {r['rss_mb_end']:.1f} MB at "
          f"the end (max {r['rss_mb_max']:.1f}): growth {r['rss_growth_pct']:+.2f} %")
    print(f"latency, first {args.window} vs last {args.window} lockstep frames after warm-up (median / p90):")
    print(f"  inference   {lf['inference_ms_median']:6.1f} / {lf['inference_ms_p90']:6.1f} ms  ->  "
          f"{ll['inference_ms_median']:6.1f} / {ll['inference_ms_p90']:6.1f} ms  "
          f"(x{ll['inference_ms_median'] / lf['inference_ms_median']:.2f})")
    print(f"  end-to-end  {lf['end_to_end_ms_median']:6.1f} / {lf['end_to_end_ms_p90']:6.1f} ms  ->  "
          f"{ll['end_to_end_ms_median']:6.1f} / {ll['end_to_end_ms_p90']:6.1f} ms  "
          f"(x{ll['end_to_end_ms_median'] / lf['end_to_end_ms_median']:.2f})")
    for name, ok in r["checks"].items():
        print(f"  [{'ok' if ok else 'FAIL'}] {name}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not 150 <= args.domain <= 232:
        print(f"warning: ROS_DOMAIN_ID {args.domain} outside the benchmark range 150..199", file=sys.stderr)
    result = run(args)
    report(result, args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0 if all(result["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
