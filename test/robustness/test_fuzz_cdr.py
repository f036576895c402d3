"""Fuzzing stt_ros.ros.conversions.image_from_cdr, the node's zero-copy reader of the serialized
Image / CompressedImage its raw subscription receives: for any bytes it either gives exactly the
fields rclpy's ``deserialize_message`` gives (and then those bytes deserialize), or gives None and
leaves the bytes to ``deserialize_message`` (which then decides: the same fields, or the same
refusal). Its pixels are a view of the received bytes, not a copy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from stt_testing.fuzz_util import examples

pytestmark = pytest.mark.ros

TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
ENCODINGS = ["rgb8", "bgr8", "mono8", "mono16", "rgba8", "yuv422_yuy2", "bayer_rggb8", "16UC1", "", "weird é"]


def image(sec: int, nanosec: int, frame_id: str, h: int, w: int, encoding: str, bigendian: int, step: int,
          data: bytes):  # noqa: ANN201
    from sensor_msgs.msg import Image

    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=bigendian, step=step)
    msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id = sec, nanosec, frame_id
    msg.data = data
    return msg


def compressed(sec: int, nanosec: int, frame_id: str, fmt: str, data: bytes):  # noqa: ANN201
    from sensor_msgs.msg import CompressedImage

    msg = CompressedImage(format=fmt)
    msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id = sec, nanosec, frame_id
    msg.data = data
    return msg


def fields(msg) -> tuple:  # noqa: ANN001
    h = msg.header
    common = (h.stamp.sec, h.stamp.nanosec, h.frame_id, bytes(msg.data))
    if hasattr(msg, "format"):
        return (*common, msg.format)
    return (*common, msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step)


def check(raw: bytes, is_compressed: bool) -> str:
    """The contract for one byte string; returns what happened (for hypothesis' statistics)."""
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CompressedImage, Image

    from stt_ros.ros.conversions import image_from_cdr

    got = image_from_cdr(raw, is_compressed)
    try:
        want = deserialize_message(raw, CompressedImage if is_compressed else Image)
    except Exception:  # noqa: BLE001 (rclpy raises plain exceptions for malformed CDR)
        assert got is None, "image_from_cdr read bytes that deserialize_message refuses"
        return "both refuse"
    if got is None:
        return "left to deserialize_message"
    assert fields(got) == fields(want)
    return "read in place"


messages = st.one_of(
    st.builds(lambda *a: (image(*a), False), st.integers(-2**31, 2**31 - 1), st.integers(0, 2**32 - 1), TEXT,
              st.integers(0, 9), st.integers(0, 9), st.sampled_from(ENCODINGS), st.integers(0, 255),
              st.integers(0, 40), st.binary(max_size=90)),
    st.builds(lambda *a: (compressed(*a), True), st.integers(-2**31, 2**31 - 1), st.integers(0, 2**32 - 1), TEXT,
              st.sampled_from(["jpeg", "png", "rgb8; jpeg compressed bgr8", ""]), st.binary(max_size=90)),
)


@settings(max_examples=examples(300))
@given(messages)
def test_intact_messages_are_read_exactly(case: tuple) -> None:
    from rclpy.serialization import serialize_message

    msg, is_compressed = case
    assert check(serialize_message(msg), is_compressed) == "read in place"


@settings(max_examples=examples(600))
@given(messages, st.sampled_from(["truncate", "flip", "append", "encapsulation"]), st.integers(0, 10**6),
       st.integers(0, 255))
def test_damaged_bytes_are_read_exactly_or_left_to_rclpy(case: tuple, damage: str, where: int, value: int) -> None:
    from rclpy.serialization import serialize_message

    msg, is_compressed = case
    raw = bytearray(serialize_message(msg))
    if damage == "truncate":
        del raw[where % len(raw):]
    elif damage == "flip":
        raw[where % len(raw)] = value
    elif damage == "append":
        raw += bytes([value]) * (where % 7 + 1)
    else:
        raw[where % 4] = value
    event(check(bytes(raw), is_compressed))


def test_refusals_and_the_view() -> None:
    from rclpy.serialization import serialize_message

    from stt_ros.ros.conversions import CdrImage, image_from_cdr, image_to_rgb

    rgb = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    raw = serialize_message(image(5, 7, "cam", 4, 6, "rgb8", 0, 18, rgb.tobytes()))
    msg = image_from_cdr(raw)
    assert isinstance(msg, CdrImage) and msg.data.obj is raw  # a view of the received bytes, no copy
    out = image_to_rgb(msg)
    assert np.array_equal(out, rgb) and not out.flags.writeable
    assert image_from_cdr(raw[:-1]) is None  # the data runs past the end
    assert image_from_cdr(raw[:10]) is None  # the frame id runs past the end
    assert image_from_cdr(b"\x00\x00" + raw[2:]) is None  # big-endian CDR: rclpy reads it
    assert image_from_cdr(b"") is None
    assert image_from_cdr(raw[:3] + b"\x01" + raw[4:]) is None  # options: Fast CDR drops 1 byte of padding
    at = raw.index(b"cam")
    assert image_from_cdr(raw[:at] + b"\xffam" + raw[at + 3:]) is None  # not UTF-8: rclpy replaces it
    assert image_from_cdr(raw[:at] + b"c\x00m" + raw[at + 3:]) is None  # a NUL inside: rclpy cuts it there
    assert image_from_cdr(raw + b"\x00" * 5).data.tobytes() == rgb.tobytes()  # rclpy ignores trailing bytes


@pytest.mark.parametrize(("encoding", "channels", "dtype", "bigendian"),
                         [("rgb8", 3, np.uint8, 0), ("bgr8", 3, np.uint8, 0), ("mono16", 1, ">u2", 1),
                          ("mono16", 1, "<u2", 0), ("yuv422_yuy2", 2, np.uint8, 0), ("bayer_rggb16", 1, "<u2", 0)])
def test_decodes_like_the_deserialized_message(encoding: str, channels: int, dtype: str, bigendian: int) -> None:
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image

    from stt_ros.ros.conversions import image_from_cdr, image_to_rgb

    rng = np.random.default_rng(3)
    h, w, pad = 6, 8, 5
    px = rng.integers(0, 2**16 if np.dtype(dtype).itemsize == 2 else 256, (h, w * channels)).astype(dtype)
    rows = np.concatenate([px.view(np.uint8).reshape(h, -1), np.zeros((h, pad), np.uint8)], 1)
    raw = serialize_message(image(1, 2, "f", h, w, encoding, bigendian, rows.shape[1], rows.tobytes()))
    assert np.array_equal(image_to_rgb(image_from_cdr(raw)), image_to_rgb(deserialize_message(raw, Image)))
