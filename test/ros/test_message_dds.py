"""stt_ros/msg/TemporalConsistency published in one process arrives intact in another over real
DDS (Fast DDS on loopback; the conftest confines discovery to localhost and a domain of its own)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.ros

TOPIC = "/test_cam/temporal_consistency"
FIELDS = dict(
    camera_name="front_left", tc_valid=True, tc_miou=0.8125, tc_pixel_agreement=0.96875,
    inference_latency_ms=21.5, end_to_end_latency_ms=48.25, ring_buffer_fill=5, ring_buffer_capacity=7,
    frames_dropped=2**40 + 3, frames_rejected=11, buffer_resets=4, frames_processed=123456,
    tc_class_intersection=[0, 7, 2**32 - 1], tc_class_union=[1, 9, 2**32 - 1],
)

PUBLISHER = textwrap.dedent(f"""
    import os, sys, time
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    import rclpy
    from stt_ros.msg import TemporalConsistency
    rclpy.init()
    node = rclpy.create_node("tc_publisher")
    pub = node.create_publisher(TemporalConsistency, {TOPIC!r}, 10)
    msg = TemporalConsistency(**{FIELDS!r})
    msg.header.frame_id = "camera_optical"
    msg.header.stamp.sec, msg.header.stamp.nanosec = 1700000000, 123456789
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pub.publish(msg)
        time.sleep(0.05)
    """)


def test_temporal_consistency_roundtrip_between_processes() -> None:
    import rclpy
    from rclpy.qos import QoSProfile

    from stt_ros.msg import TemporalConsistency

    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    proc = subprocess.Popen([sys.executable, "-c", PUBLISHER], stderr=subprocess.PIPE, text=True)
    received: list[TemporalConsistency] = []
    rclpy.init()
    try:
        node = rclpy.create_node("tc_subscriber")
        node.create_subscription(TemporalConsistency, TOPIC, received.append, QoSProfile(depth=10))
        deadline = time.monotonic() + 30
        while not received and time.monotonic() < deadline and proc.poll() is None:
            rclpy.spin_once(node, timeout_sec=0.1)
        node.destroy_node()
    finally:
        rclpy.shutdown()
        proc.kill()
        _, err = proc.communicate(timeout=10)
    assert received, f"no TemporalConsistency message arrived within 30 s; publisher stderr:\n{err}"
    msg = received[0]
    assert msg.header.frame_id == "camera_optical"
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1700000000, 123456789)
    for name, value in FIELDS.items():
        got = getattr(msg, name)
        if isinstance(value, float):
            assert math.isclose(got, value, rel_tol=1e-6), name
        else:
            assert list(got) == value if isinstance(value, list) else got == value, name


def test_message_documents_units_and_types() -> None:
    """The fields a user plots are scalars of the documented types."""
    from stt_ros.msg import TemporalConsistency

    types = TemporalConsistency.get_fields_and_field_types()
    assert types["header"] == "std_msgs/Header"
    assert types["camera_name"] == "string"
    for name in ("tc_miou", "tc_pixel_agreement", "inference_latency_ms", "end_to_end_latency_ms"):
        assert types[name] == "float", name
    for name in ("frames_dropped", "frames_rejected", "buffer_resets", "frames_processed"):
        assert types[name] == "uint64", name
    assert types["ring_buffer_fill"] == "uint32"
    assert types["tc_class_intersection"] == types["tc_class_union"] == "sequence<uint32>"
