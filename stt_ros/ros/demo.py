"""`make demo` for now: the streaming STT pipeline on a generated drive, reported over real DDS.

Runs StreamingSegmenter (stt_bise18, random weights unless --weights) over a short synthetic
video, publishes one stt_ros/msg/TemporalConsistency per frame with the measured latency and
ring-buffer fill, and receives them in a second node over DDS on loopback. It proves the
environment (torch, OpenCV, rclpy + Fast DDS, the generated message) end to end; the bag
evaluation issue gives `make demo` its full job.

Example::

    ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_DOMAIN_ID=42 python -m stt_ros.ros.demo --frames 12
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np


def synthetic_drive(n: int, height: int, width: int, seed: int = 0) -> list[np.ndarray]:
    """Sky, road and a car sliding across: enough structure for query selection to find edges."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        img = np.empty((height, width, 3), np.uint8)
        horizon = height // 2
        img[:horizon] = (110, 160, 230)
        img[horizon:] = (90, 90, 95)
        img[horizon + height // 8:horizon + height // 8 + 3, :] = 240  # lane marking
        x0 = (width // 8 + 6 * i) % width
        img[horizon - height // 10:horizon + height // 10, x0:x0 + width // 6] = (200, 30, 30)
        noise = rng.integers(-8, 9, size=img.shape)
        frames.append(np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8))
    return frames


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: python -m stt_ros.ros.demo --frames 12 --height 256 --width 512")
    parser.add_argument("--model", default="stt_bise18")
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--height", type=int, default=256, help="network input height (multiple of 32)")
    parser.add_argument("--width", type=int, default=512, help="network input width (multiple of 32)")
    parser.add_argument("--weights", default="", help=".safetensors checkpoint (default: random weights)")
    args = parser.parse_args(argv)

    # DDS stays on loopback, on a domain of its own, whatever the caller's environment says.
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("ROS_DOMAIN_ID", "42")

    import rclpy
    from rclpy.qos import QoSProfile

    from stt_ros.config import ConfigError, STTConfig
    from stt_ros.msg import TemporalConsistency
    from stt_ros.runtime import StreamingSegmenter, create_backend

    try:
        cfg = STTConfig(model=args.model, input_height=args.height, input_width=args.width, weights=args.weights)
        backend = create_backend(cfg)
    except (ConfigError, ValueError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    seg = StreamingSegmenter(backend)
    print(f"demo: {cfg.model} at {cfg.input_height}x{cfg.input_width}, T={cfg.key_frames}, TR={cfg.query_ratio}, "
          f"weights={'random' if not cfg.weights else cfg.weights}; DDS domain {os.environ['ROS_DOMAIN_ID']} "
          f"on loopback")

    rclpy.init()
    received: list[TemporalConsistency] = []
    try:
        pub_node = rclpy.create_node("stt_demo")
        sub_node = rclpy.create_node("stt_demo_listener")
        qos = QoSProfile(depth=args.frames)
        pub = pub_node.create_publisher(TemporalConsistency, "demo/temporal_consistency", qos)
        sub_node.create_subscription(TemporalConsistency, "demo/temporal_consistency", received.append, qos)
        deadline = time.monotonic() + 10
        while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            rclpy.spin_once(sub_node, timeout_sec=0.05)
        print(f"{'frame':>5} {'fill':>4} {'total ms':>9} {'network ms':>10} {'classes':>7}")
        totals = []
        for i, frame in enumerate(synthetic_drive(args.frames, args.height, args.width)):
            stamp = pub_node.get_clock().now()
            r = seg.process(frame)
            totals.append(r.timings["total_ms"])
            msg = TemporalConsistency(camera_name="demo", tc_valid=False, tc_miou=float("nan"),
                                      tc_pixel_agreement=float("nan"),
                                      inference_latency_ms=r.timings["total_ms"],
                                      ring_buffer_fill=r.buffer_fill, ring_buffer_capacity=seg.capacity,
                                      frames_processed=i + 1)
            msg.header.stamp = stamp.to_msg()
            msg.header.frame_id = "demo_camera"
            msg.end_to_end_latency_ms = (pub_node.get_clock().now() - stamp).nanoseconds / 1e6
            pub.publish(msg)
            rclpy.spin_once(sub_node, timeout_sec=0.0)
            print(f"{i:>5} {r.buffer_fill:>4} {r.timings['total_ms']:>9.1f} {r.timings['network_ms']:>10.1f} "
                  f"{len(np.unique(r.mask)):>7}")
        deadline = time.monotonic() + 5
        while len(received) < args.frames and time.monotonic() < deadline:
            rclpy.spin_once(sub_node, timeout_sec=0.05)
    finally:
        rclpy.try_shutdown()
    steady = totals[cfg.key_frames + 1:] or totals
    print(f"demo: {len(received)}/{args.frames} TemporalConsistency messages received over DDS; median step "
          f"{statistics.median(steady):.1f} ms with a full ring buffer")
    ok = len(received) == args.frames and [m.frames_processed for m in received] == list(range(1, args.frames + 1))
    print("demo: OK" if ok else "demo: FAILED: messages missing or out of order", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
