"""stt_node over real DDS with the inputs and setups users have: malformed CDR, 2-megapixel frames
from a sender without the large-image profile, use_sim_time without /clock, library logging."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from stt_testing.node_harness import Client, NodeProcess, image_msg, textured_frames, write_params

pytestmark = pytest.mark.ros

SMALL = {"model": "stt_bise18", "input_height": 64, "input_width": 128, "key_frames": 2}


def statuses(client: Client, camera: str) -> list[tuple[str, dict]]:
    out = []
    for arr in client.messages("/diagnostics"):
        for st in arr.status:
            if st.hardware_id == camera:
                out.append((st.message, {kv.key: kv.value for kv in st.values}))
    return out


def start(tmp_path: Path, domain: int, extra: list[str] | None = None, **params) -> tuple[NodeProcess, Client]:  # noqa: ANN003
    from diagnostic_msgs.msg import DiagnosticArray

    from stt_ros.msg import TemporalConsistency

    proc = NodeProcess(write_params(tmp_path / "p.yaml", **{**SMALL, **params}), domain, extra)
    assert proc.wait_for_line("cameras:", 90), proc.output
    client = Client(domain)
    client.subscribe(DiagnosticArray, "/diagnostics")
    client.subscribe(TemporalConsistency, "/camera/temporal_consistency")
    return proc, client


def test_malformed_cdr_is_rejected_reported_and_the_next_frame_served(tmp_path: Path, dds_isolation: int) -> None:
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image

    proc, client = start(tmp_path, dds_isolation, input_reliability="reliable", diagnostics_period_s=0.25)
    try:
        pub = client.publisher(Image, "/camera/image_raw")
        assert client.wait_matched("/camera/image_raw")
        good = serialize_message(image_msg(textured_frames(1, 48, 64, seed=0)[0], 1.0, "camera"))
        pub.publish(good[: len(good) // 3])  # a truncated sample: the CDR does not deserialize
        assert client.wait(lambda: any("malformed message" in v.get("last_error", "")
                                       for _, v in statuses(client, "camera")), 15), statuses(client, "camera")[-1:]
        pub.publish(good)
        assert client.wait(lambda: len(client.messages("/camera/temporal_consistency")) == 1, 30)
        tc = client.messages("/camera/temporal_consistency")[0]
        assert tc.frames_rejected == 1 and tc.frames_processed == 1
    finally:
        client.close()
        assert proc.stop() == 0, proc.output[-3000:]
    assert "Traceback" not in proc.output


def test_sim_time_without_clock_keeps_diagnostics_and_says_why(tmp_path: Path, dds_isolation: int) -> None:
    proc, client = start(tmp_path, dds_isolation, ["-p", "use_sim_time:=true"], diagnostics_period_s=0.25)
    try:
        assert client.wait(lambda: len(client.messages("/diagnostics")) >= 3, 15), "no /diagnostics with sim time"
        message = statuses(client, "camera")[-1][0]
        assert "use_sim_time is true but no /clock" in message, message
    finally:
        client.close()
        assert proc.stop() == 0, proc.output[-3000:]


def test_library_logging_reaches_the_ros_log(tmp_path: Path, dds_isolation: int) -> None:
    """The backends log with Python logging; the node forwards it (here: the onnxruntime backend's
    line about the graph it loads, which reaches /rosout's console output as a ROS log line)."""
    import torch

    from stt_ros.config import STTConfig
    from stt_ros.model.zoo import build_model
    from stt_train.export import export_step

    cfg = STTConfig(**SMALL)
    torch.manual_seed(0)
    onnx = tmp_path / "m.onnx"
    export_step(build_model(cfg).eval(), cfg, onnx)
    proc, client = start(tmp_path, dds_isolation, backend="onnxruntime", weights=str(onnx))
    try:
        lines = [line for line in proc.lines if "[stt_ros." in line]
        assert lines and all("stt_node" in line for line in lines), proc.output[-3000:]
    finally:
        client.close()
        assert proc.stop() == 0, proc.output[-3000:]


@pytest.mark.slow
def test_two_megapixel_frames_from_a_plain_publisher(tmp_path: Path, dds_isolation: int) -> None:
    """1024x2048 rgb8 from an rclpy publisher without the large-image profile, to the node at its
    defaults (best_effort input): they are segmented, or within 5 s /diagnostics says why not and
    what to set."""
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    proc, client = start(tmp_path, dds_isolation, diagnostics_period_s=0.5)
    try:
        pub = client.node.create_publisher(Image, "/camera/image_raw", qos_profile_sensor_data)
        assert client.wait(lambda: pub.get_subscription_count() > 0, 30)
        msgs = [image_msg(f, 0.0, "camera") for f in textured_frames(2, 1024, 2048, seed=0)]
        t0 = time.monotonic()
        i = 0
        explained = segmented = False
        while time.monotonic() - t0 < 8.0 and not (explained or segmented):
            msg = msgs[i % 2]
            msg.header.stamp.sec, msg.header.stamp.nanosec = 10 + i // 5, (i % 5) * 200_000_000
            pub.publish(msg)
            i += 1
            time.sleep(0.2)
            segmented = bool(client.messages("/camera/temporal_consistency"))
            explained = any("matched" in m and "input_reliability" in m for m, _ in statuses(client, "camera"))
        assert segmented or (explained and time.monotonic() - t0 <= 5.5), statuses(client, "camera")[-2:]
    finally:
        client.close()
        assert proc.stop() == 0, proc.output[-3000:]
