"""stt_node over real rclpy and real DDS (loopback only, a domain per module)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from stt_ros.config import STTConfig
from stt_ros.model.zoo import build_model
from stt_ros.runtime import StreamingSegmenter, create_backend
from stt_ros.weights import save_weights
from stt_testing.node_harness import (
    ROOT,
    Client,
    NodeProcess,
    expect_fatal,
    image_msg,
    random_weights,
    textured_frames,
    write_params,
)

pytestmark = pytest.mark.ros

NET = {"model": "stt_bise18", "input_height": 64, "input_width": 128, "key_frames": 3}
CAMERAS = ["front", "rear", "bad", "comp", "color"]
BUILTIN_PARAMS = {"use_sim_time", "start_type_description_service"}


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_weights(tmp_path_factory.mktemp("w") / "stt.safetensors", STTConfig(**NET), seed=7)


@pytest.fixture(scope="module")
def offline(weights: Path):
    """Segmenters on the same weights, outside ROS: what the node must reproduce."""
    backend = create_backend(STTConfig(**NET, weights=str(weights)))
    return lambda: StreamingSegmenter(backend)


@pytest.fixture(scope="module")
def node(weights: Path, tmp_path_factory: pytest.TempPathFactory, module_domain: int):
    domain = module_domain
    params = write_params(tmp_path_factory.mktemp("p") / "p.yaml", **NET, weights=str(weights),
                          camera_names=CAMERAS, camera_topics=[f"/{c}/image" for c in CAMERAS],
                          camera_transports=["raw", "raw", "raw", "compressed", "raw"],
                          input_reliability="reliable", diagnostics_period_s=0.5, max_frame_gap_s=5.0)
    proc = NodeProcess(params, domain)
    assert proc.wait_for_line("cameras:", 90), proc.output
    client = Client(domain)
    yield proc, client
    client.close()
    assert proc.stop() == 0, proc.output


def send(client: Client, camera: str, msg, count_before: int, timeout: float = 30.0) -> list:  # noqa: ANN001
    """Publish one image and wait for the node's temporal_consistency answer to it."""
    from sensor_msgs.msg import CompressedImage, Image

    from stt_ros.msg import TemporalConsistency

    topic = f"/{camera}/image" + ("/compressed" if isinstance(msg, CompressedImage) else "")
    pub = client.publisher(type(msg), topic)
    tc_topic = f"/{camera}/temporal_consistency"
    if tc_topic not in client.received:
        client.subscribe(TemporalConsistency, tc_topic)
        client.subscribe(Image, f"/{camera}/mask")
    assert client.wait_matched(topic), f"node never subscribed to {topic}"
    time.sleep(0.05)
    pub.publish(msg)
    assert client.wait(lambda: len(client.messages(tc_topic)) > count_before, timeout), f"no answer on {tc_topic}"
    return client.messages(tc_topic)


def mask_of(msg) -> np.ndarray:  # noqa: ANN001
    assert msg.encoding == "mono8"
    return np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)[:, : msg.width]


def test_two_cameras_masks_headers_and_isolation(node, offline) -> None:
    _, client = node
    a_frames, b_frames = textured_frames(6, 90, 160, seed=1), textured_frames(6, 72, 128, seed=2)
    for i in range(6):
        send(client, "front", image_msg(a_frames[i], 100 + 0.1 * i, "front_optical"), i)
        send(client, "rear", image_msg(b_frames[i], 200 + 0.1 * i, "rear_optical", encoding="bgr8"), i)
    assert client.wait(lambda: len(client.messages("/front/mask")) == 6 and len(client.messages("/rear/mask")) == 6)
    seg_a, seg_b = offline(), offline()
    for i, msg in enumerate(client.messages("/front/mask")):
        assert msg.header.frame_id == "front_optical"
        assert (msg.header.stamp.sec, round(msg.header.stamp.nanosec / 1e8)) == (100, i)
        assert (msg.height, msg.width) == (90, 160)
        np.testing.assert_array_equal(mask_of(msg), seg_a.process(a_frames[i]).mask, err_msg=f"front frame {i}")
    for i, msg in enumerate(client.messages("/rear/mask")):
        assert msg.header.frame_id == "rear_optical" and (msg.height, msg.width) == (72, 128)
        np.testing.assert_array_equal(mask_of(msg), seg_b.process(b_frames[i]).mask, err_msg=f"rear frame {i}")
    tcs = client.messages("/front/temporal_consistency")
    assert [m.ring_buffer_fill for m in tcs] == [0, 1, 2, 3, 3, 3]
    assert not tcs[0].tc_valid and all(m.tc_valid for m in tcs[1:])
    assert all(0.0 <= m.tc_miou <= 1.0 and 0.0 <= m.tc_pixel_agreement <= 1.0 for m in tcs[1:])
    assert all(m.camera_name == "front" and m.inference_latency_ms > 0 for m in tcs)
    assert tcs[-1].frames_processed == 6 and tcs[-1].frames_dropped == 0


def test_bad_images_are_rejected_counted_and_the_next_one_served(node) -> None:
    from diagnostic_msgs.msg import DiagnosticArray

    proc, client = node
    good = textured_frames(1, 48, 64, seed=3)[0]
    client.subscribe(DiagnosticArray, "/diagnostics")
    wrong_encoding = image_msg(good, 1.0, "bad")
    wrong_encoding.encoding = "32FC1"
    short = image_msg(good, 1.1, "bad")
    short.data = bytes(short.data)[:-100]
    empty = image_msg(good, 1.2, "bad")
    empty.height, empty.width, empty.step, empty.data = 0, 0, 0, b""
    pub = client.publisher(type(good_msg := image_msg(good, 1.3, "bad")), "/bad/image")
    tcs = send(client, "bad", image_msg(good, 0.9, "bad"), 0)
    assert tcs[-1].frames_rejected == 0
    for bad in (wrong_encoding, short, empty):
        pub.publish(bad)
        time.sleep(0.3)  # one at a time: a waiting frame would be replaced, not rejected
    tcs = send(client, "bad", good_msg, 1)
    assert tcs[-1].frames_rejected == 3 and tcs[-1].frames_processed == 2
    assert proc.wait_for_line("unsupported encoding '32FC1'", 10), proc.output

    def bad_status():  # noqa: ANN202
        for arr in reversed(client.messages("/diagnostics")):
            for st in arr.status:
                if st.hardware_id == "bad":
                    return {kv.key: kv.value for kv in st.values}
        return None

    assert client.wait(lambda: (bad_status() or {}).get("frames_rejected") == "3", 10)
    assert "data holds" in bad_status()["last_error"] or "empty image" in bad_status()["last_error"]


def test_size_change_backwards_stamp_and_gap_reset_the_buffer(node) -> None:
    proc, client = node
    frames = textured_frames(4, 48, 64, seed=4)
    n = len(client.messages("/bad/temporal_consistency"))
    tcs = send(client, "bad", image_msg(frames[0], 10.0, "bad"), n)
    resets0 = tcs[-1].buffer_resets
    tcs = send(client, "bad", image_msg(frames[1], 10.1, "bad"), n + 1)
    assert tcs[-1].ring_buffer_fill >= 1 and tcs[-1].buffer_resets == resets0
    bigger = cv2.resize(frames[2], (96, 72))
    tcs = send(client, "bad", image_msg(bigger, 10.2, "bad"), n + 2)
    assert tcs[-1].buffer_resets == resets0 + 1 and tcs[-1].ring_buffer_fill == 0
    tcs = send(client, "bad", image_msg(bigger, 10.3, "bad"), n + 3)
    assert tcs[-1].ring_buffer_fill == 1
    tcs = send(client, "bad", image_msg(bigger, 5.0, "bad"), n + 4)  # a bag looping
    assert tcs[-1].buffer_resets == resets0 + 2 and tcs[-1].ring_buffer_fill == 0 and not tcs[-1].tc_valid
    tcs = send(client, "bad", image_msg(bigger, 11.0, "bad"), n + 5)  # 6 s gap > max_frame_gap_s
    assert tcs[-1].buffer_resets == resets0 + 3 and tcs[-1].ring_buffer_fill == 0
    assert proc.wait_for_line("stamp went backwards", 5) and proc.wait_for_line("image size changed", 5)


def test_compressed_input(node, offline) -> None:
    from sensor_msgs.msg import CompressedImage

    _, client = node
    frames = textured_frames(2, 60, 100, seed=5)
    seg = offline()
    for i, rgb in enumerate(frames):
        msg = CompressedImage(format="png")
        msg.data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()
        msg.header.frame_id = "comp"
        msg.header.stamp.sec = 50 + i
        send(client, "comp", msg, i)
        assert client.wait(lambda i=i: len(client.messages("/comp/mask")) == i + 1)
        np.testing.assert_array_equal(mask_of(client.messages("/comp/mask")[i]), seg.process(rgb).mask)


def test_colour_outputs_when_subscribed(node) -> None:
    from sensor_msgs.msg import Image

    _, client = node
    client.subscribe(Image, "/color/color_mask")
    client.subscribe(Image, "/color/overlay")
    assert client.wait(lambda: client.node.count_publishers("/color/overlay") > 0)
    time.sleep(0.5)  # let the node see both subscriptions
    rgb = textured_frames(1, 40, 70, seed=6)[0]
    send(client, "color", image_msg(rgb, 3.0, "color", encoding="rgba8", pad=8), 0)
    assert client.wait(lambda: client.messages("/color/color_mask") and client.messages("/color/overlay"))
    color, over = client.messages("/color/color_mask")[0], client.messages("/color/overlay")[0]
    mask = mask_of(client.messages("/color/mask")[0])
    for msg in (color, over):
        assert msg.encoding == "rgb8" and (msg.height, msg.width) == (40, 70) and msg.header.frame_id == "color"
    from stt_ros.viz import palette

    colours = np.frombuffer(color.data, np.uint8).reshape(40, 70, 3)
    np.testing.assert_array_equal(colours, palette("cityscapes")[mask])


def test_parameters_match_the_params_file_and_validate(node) -> None:
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import ListParameters, SetParameters

    _, client = node
    listed = client.call(ListParameters, "/stt_node/list_parameters", ListParameters.Request())
    declared = set(listed.result.names) - BUILTIN_PARAMS
    in_file = set(yaml.safe_load((ROOT / "config" / "stt.yaml").read_text())["/**"]["ros__parameters"])
    assert declared == in_file

    def set_param(name: str, value: ParameterValue) -> bool:
        req = SetParameters.Request(parameters=[Parameter(name=name, value=value)])
        return client.call(SetParameters, "/stt_node/set_parameters", req).results[0].successful

    dbl = lambda v: ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=v)  # noqa: E731
    assert set_param("overlay_alpha", dbl(0.25))
    assert not set_param("overlay_alpha", dbl(2.0))  # outside its range
    assert not set_param("model", ParameterValue(type=ParameterType.PARAMETER_STRING, string_value="psp18"))
    assert not set_param("tc_error", dbl(0.99))  # would exceed tc_warn: rejected by validation


def test_reset_service_clears_every_buffer(node) -> None:
    from std_srvs.srv import Trigger

    _, client = node
    n = len(client.messages("/front/temporal_consistency"))
    resets = client.messages("/front/temporal_consistency")[-1].buffer_resets
    answer = client.call(Trigger, "/stt_node/reset", Trigger.Request())
    assert answer.success and "5 camera" in answer.message
    rgb = textured_frames(7, 90, 160, seed=1)[6]
    tcs = send(client, "front", image_msg(rgb, 100.6, "front_optical"), n)
    assert tcs[-1].ring_buffer_fill == 0 and tcs[-1].buffer_resets == resets + 1


@pytest.mark.slow
def test_slow_model_fast_publisher_drops_with_bounded_memory(tmp_path: Path, dds_isolation: int) -> None:
    from stt_ros.msg import TemporalConsistency

    # reliable input: every frame reaches the node, so only its latest-frame-wins mailbox drops
    # (best effort lost a load-dependent share of these 100 Hz, 0.9 MB frames in transport)
    params = write_params(tmp_path / "p.yaml", model="stt_bise18", input_height=256, input_width=512,
                          camera_names=["cam"], camera_topics=["/cam/image"], input_reliability="reliable")
    proc = NodeProcess(params, dds_isolation)
    client = Client(dds_isolation)
    try:
        assert proc.wait_for_line("cameras:", 90), proc.output
        client.subscribe(TemporalConsistency, "/cam/temporal_consistency")
        pub = client.publisher(type(image_msg(np.zeros((8, 8, 3), np.uint8), 0, "cam")), "/cam/image")
        assert client.wait_matched("/cam/image")
        frames = [image_msg(f, 0, "cam") for f in textured_frames(10, 480, 640, seed=8)]
        rss = []
        start = time.monotonic()
        i = 0
        while time.monotonic() - start < 8.0:  # 100 Hz against a model that takes ~150 ms a frame
            msg = frames[i % 10]
            t = 1000 + i * 0.01
            msg.header.stamp.sec, msg.header.stamp.nanosec = int(t), int((t % 1) * 1e9)
            pub.publish(msg)
            i += 1
            if i % 100 == 0:
                rss.append(proc.rss_kb())
            time.sleep(0.01)
        assert client.wait(lambda: len(client.messages("/cam/temporal_consistency")) > 5, 20)
        time.sleep(1.0)
        last = client.messages("/cam/temporal_consistency")[-1]
        assert last.frames_dropped > 5 * last.frames_processed / 4, (last.frames_dropped, last.frames_processed, i)
        assert last.frames_processed < i / 2
        growth_mb = (max(rss[2:]) - rss[1]) / 1024  # after warm-up
        assert growth_mb < 60, f"node memory grew by {growth_mb:.0f} MB while dropping frames: {rss}"
    finally:
        client.close()
        proc.stop()


@pytest.mark.parametrize(("override", "expected"), [
    ({"weights": "/nonexistent/model.safetensors"}, "/nonexistent/model.safetensors does not exist"),
    ({"model": "stt_bise50"}, "model='stt_bise50' is not a zoo model"),
    ({"model": "stt_psp18", "weights": "WEIGHTS"}, "different model: model: checkpoint 'stt_bise18', config "
                                                   "'stt_psp18' (set these parameters, or model_config to the YAML"),
    ({"model_config": "/nonexistent/model.yaml"}, "cannot read config file /nonexistent/model.yaml"),
])
def test_model_loading_failures_stop_with_one_clear_message(tmp_path: Path, dds_isolation: int, weights: Path,
                                                           override: dict, expected: str) -> None:
    override = {k: (str(weights) if v == "WEIGHTS" else v) for k, v in override.items()}
    params = write_params(tmp_path / "p.yaml", **{**NET, **override})
    proc = NodeProcess(params, dds_isolation)
    expect_fatal(proc, expected)


def test_model_config_runs_a_model_as_trained(tmp_path: Path, dds_isolation: int) -> None:
    """model_config: the model YAML beside a checkpoint replaces the defaults, even where the params file
    (config/stt.yaml, passed first by NodeProcess as by the launch file) lists them; a value set to
    anything but its default still wins, and `ros2 param get` shows what runs."""
    from rcl_interfaces.srv import GetParameters

    torch.manual_seed(3)
    trained = STTConfig(model="stt_bise18", input_height=64, input_width=96, key_frames=2, key_window_end=2,
                        query_ratio=1.0, attn_dim=16, attn_affinity="l2")
    save_weights(build_model(trained), tmp_path / "m.safetensors", config=trained.to_dict())
    yaml_path = tmp_path / "m.yaml"
    yaml_path.write_text(yaml.safe_dump({**trained.to_dict(), "weights": "m.safetensors"}))  # beside the YAML
    params = write_params(tmp_path / "p.yaml", model_config=str(yaml_path), key_frames=1, camera_names=["cam"],
                          camera_topics=["/cam/image"], input_reliability="reliable")
    proc = NodeProcess(params, dds_isolation)
    assert proc.wait_for_line("cameras:", 90), proc.output
    client = Client(dds_isolation)
    try:
        names = ["attn_affinity", "attn_dim", "query_ratio", "input_width", "key_frames", "weights"]
        got = client.call(GetParameters, "/stt_node/get_parameters", GetParameters.Request(names=names)).values
        assert [got[0].string_value, got[1].integer_value, got[2].double_value, got[3].integer_value,
                got[4].integer_value, got[5].string_value] == ["l2", 16, 1.0, 96, 1, str(tmp_path / "m.safetensors")]
        frames = textured_frames(3, 60, 100, seed=4)
        for i, rgb in enumerate(frames):
            send(client, "cam", image_msg(rgb, 10 + 0.1 * i, "cam"), i)
        assert client.wait(lambda: len(client.messages("/cam/mask")) == 3)
        runs = trained.replace(key_frames=1, weights=str(tmp_path / "m.safetensors"))
        seg = StreamingSegmenter(create_backend(runs))
        for i, msg in enumerate(client.messages("/cam/mask")):
            np.testing.assert_array_equal(mask_of(msg), seg.process(frames[i]).mask, err_msg=f"frame {i}")
        assert [m.ring_buffer_fill for m in client.messages("/cam/temporal_consistency")] == [0, 1, 1]
    finally:
        client.close()
        assert proc.stop() == 0, proc.output


def test_middleware_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    from stt_ros.ros.node import configure_middleware

    for var in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE", "STT_FASTDDS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    notes = configure_middleware()
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    profile = Path(os.environ["FASTDDS_DEFAULT_PROFILES_FILE"])
    assert profile.name == "fastdds_large_images.xml" and "<segment_size>67108864" in profile.read_text()
    assert any("shared-memory" in n for n in notes)
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "SUBNET")  # a user's choice is kept
    monkeypatch.delenv("FASTDDS_DEFAULT_PROFILES_FILE")
    monkeypatch.setenv("STT_FASTDDS_PROFILE", "none")
    configure_middleware()
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "SUBNET"
    assert "FASTDDS_DEFAULT_PROFILES_FILE" not in os.environ
