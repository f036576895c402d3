"""stt_node over real DDS takes what USB and industrial cameras publish (issue 23): a yuv422_yuy2
(YUYV) frame, a Bayer mosaic and big-endian mono16 each give the mask of OpenCV's RGB for them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from stt_ros.config import STTConfig
from stt_ros.runtime import StreamingSegmenter, create_backend
from stt_testing.node_harness import Client, NodeProcess, random_weights, textured_frames, write_params

pytestmark = pytest.mark.ros

NET = {"model": "bise18", "input_height": 64, "input_width": 128}  # per-frame: each mask stands alone
H, W = 48, 96


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_weights(tmp_path_factory.mktemp("w") / "bise.safetensors", STTConfig(**NET), seed=11)


@pytest.fixture(scope="module")
def node(weights: Path, tmp_path_factory: pytest.TempPathFactory, module_domain: int):
    params = write_params(tmp_path_factory.mktemp("p") / "p.yaml", **NET, weights=str(weights),
                          camera_names=["usb"], camera_topics=["/usb/image"], camera_transports=["raw"],
                          input_reliability="reliable", max_frame_gap_s=100.0)
    proc = NodeProcess(params, module_domain)
    assert proc.wait_for_line("cameras:", 90), proc.output
    client = Client(module_domain)
    yield proc, client
    client.close()
    assert proc.stop() == 0, proc.output


def yuyv(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 2) YUYV of ``rgb`` from OpenCV's RGB -> I420 of the row-doubled image (4:2:2 chroma)."""
    h, w = rgb.shape[:2]
    i420 = cv2.cvtColor(np.repeat(rgb, 2, axis=0), cv2.COLOR_RGB2YUV_I420)
    y = i420[: 2 * h].reshape(2 * h, w)[::2]
    u, v = i420[2 * h: 2 * h + h // 2].reshape(h, w // 2), i420[2 * h + h // 2:].reshape(h, w // 2)
    return np.stack([y[:, 0::2], u, y[:, 1::2], v], -1).reshape(h, w, 2)


def test_node_accepts_yuyv_bayer_and_big_endian_mono16(node, weights: Path) -> None:
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from stt_ros.msg import TemporalConsistency
    from stt_ros.ros.conversions import cv2_to_imgmsg

    proc, client = node
    rgb = textured_frames(1, H, W, seed=8)[0]
    grbg = np.empty((H, W), np.uint8)  # a grbg sensor: G R / B G
    grbg[0::2, 0::2], grbg[0::2, 1::2] = rgb[0::2, 0::2, 1], rgb[0::2, 1::2, 0]
    grbg[1::2, 0::2], grbg[1::2, 1::2] = rgb[1::2, 0::2, 2], rgb[1::2, 1::2, 1]
    grey16 = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.uint16) * 257
    frames = [("yuv422_yuy2", yuyv(rgb), cv2.COLOR_YUV2RGB_YUY2),
              ("bayer_grbg8", grbg, cv2.COLOR_BayerGB2RGB),  # OpenCV names the second row
              ("mono16", grey16.astype(">u2"), None)]
    client.subscribe(Image, "/usb/mask")
    client.subscribe(TemporalConsistency, "/usb/temporal_consistency")
    pub = client.publisher(Image, "/usb/image")
    assert client.wait_matched("/usb/image"), "node never subscribed to /usb/image"
    offline = create_backend(STTConfig(**NET, weights=str(weights)))
    for i, (encoding, pixels, code) in enumerate(frames):
        header = Header(frame_id="usb_optical")
        header.stamp.sec = 100 + i
        msg = cv2_to_imgmsg(pixels, encoding, header)
        assert msg.is_bigendian == (encoding == "mono16")
        pub.publish(msg)
        assert client.wait(lambda i=i: len(client.messages("/usb/mask")) == i + 1, 30), \
            f"no mask for the {encoding} frame:\n{proc.output}"
        out = client.messages("/usb/mask")[i]
        assert (out.height, out.width, out.encoding) == (H, W, "mono8") and out.header.stamp.sec == 100 + i
        expected_rgb = cv2.cvtColor(pixels, code) if code is not None else \
            cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        mask = np.frombuffer(out.data, np.uint8).reshape(out.height, out.step)[:, :W]
        np.testing.assert_array_equal(mask, StreamingSegmenter(offline).process(expected_rgb).mask, err_msg=encoding)
    assert client.wait(lambda: len(client.messages("/usb/temporal_consistency")) == 3)
    last = client.messages("/usb/temporal_consistency")[-1]
    assert last.frames_processed == 3 and last.frames_rejected == 0
    assert "unsupported encoding" not in proc.output
