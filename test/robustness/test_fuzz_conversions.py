"""Fuzzing where camera data enters the node: sensor_msgs/Image and CompressedImage -> RGB, then
the resize to the network and back. Every input either converts to exactly the image an
independent reference computes, or is refused with ImageError; nothing else escapes, and a small
compressed message cannot make the decoder allocate a huge image."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from stt_ros.runtime.preprocess import Preprocessor, postprocess
from stt_testing.fuzz_util import examples

ROOT = Path(__file__).resolve().parents[2]
CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
UNSUPPORTED = ["16UC1", "32FC1", "bayer_rggb8", "yuv422", "8UC3", "RGB8", "", " rgb8", "rgb8\x00", "mono16"]
HUGE = [2**31 - 1, 2**31, 2**32 - 1, 8193 * 8193, 65536]


def reference_rgb(encoding: str, h: int, w: int, step: int, data: bytes) -> np.ndarray:
    """What image_to_rgb must return for a valid message, computed without OpenCV."""
    c = CHANNELS[encoding]
    px = np.frombuffer(data, np.uint8)[: step * h].reshape(h, step)[:, : w * c].reshape(h, w, c)
    return {"rgb8": lambda: px, "bgr8": lambda: px[..., ::-1], "rgba8": lambda: px[..., :3],
            "bgra8": lambda: px[..., 2::-1], "mono8": lambda: np.repeat(px, 3, axis=2)}[encoding]()


@st.composite
def image_messages(draw: st.DrawFn) -> tuple:
    if draw(st.booleans()):  # half the time a well-formed message (odd sizes, padded rows, extra data)
        encoding = draw(st.sampled_from(list(CHANNELS)))
        h, w = draw(st.integers(1, 24)), draw(st.integers(1, 24))
        step = w * CHANNELS[encoding] + draw(st.sampled_from([0, 0, 1, 3, 8]))
        data = draw(st.binary(min_size=step * h, max_size=step * h + draw(st.sampled_from([0, 0, 5]))))
        return encoding, h, w, step, draw(st.integers(0, 255)), data
    encoding = draw(st.one_of(st.sampled_from(list(CHANNELS)), st.sampled_from(UNSUPPORTED), st.text(max_size=8)))
    h = draw(st.one_of(st.integers(0, 24), st.sampled_from(HUGE)))
    w = draw(st.one_of(st.integers(0, 24), st.sampled_from(HUGE)))
    c = CHANNELS.get(encoding, 3)
    step = draw(st.one_of(st.just(w * c), st.integers(0, 120), st.sampled_from([w * c - 1, w * c + 1, w * c + 7]),
                          st.sampled_from([2**32 - 1, 2**31])))
    step = min(max(step, 0), 2**32 - 1)
    need = step * h
    # data around what step * height needs (truncated by a few bytes, exact, longer), capped at 64 KB
    length = draw(st.one_of(st.integers(0, 64), st.just(need), st.integers(need - 8, need + 8)))
    length = min(max(length, 0), 1 << 16)
    data = draw(st.binary(min_size=length, max_size=length))
    bigendian = draw(st.integers(0, 255))
    return encoding, h, w, step, bigendian, data


def make_image(encoding: str, h: int, w: int, step: int, bigendian: int, data: bytes):  # noqa: ANN201
    from sensor_msgs.msg import Image

    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=bigendian, step=step)
    msg.data = data
    return msg


@pytest.mark.ros
@settings(max_examples=examples(400))
@given(image_messages())
def test_image_message_converts_exactly_or_is_rejected(fields: tuple) -> None:
    from stt_ros.ros.conversions import MAX_PIXELS, ImageError, image_to_rgb

    encoding, h, w, step, bigendian, data = fields
    msg = make_image(*fields)
    c = CHANNELS.get(encoding)
    valid = (c is not None and h > 0 and w > 0 and h * w <= MAX_PIXELS and step >= w * c and len(data) >= step * h)
    event("valid" if valid else "invalid")
    if not valid:
        with pytest.raises(ImageError) as exc:
            image_to_rgb(msg)
        assert str(exc.value)  # says why
        return
    rgb = image_to_rgb(msg)
    assert rgb.dtype == np.uint8 and rgb.shape == (h, w, 3)
    np.testing.assert_array_equal(rgb, reference_rgb(encoding, h, w, step, data))
    # 8-bit encodings have no byte order: the flag changes nothing
    np.testing.assert_array_equal(image_to_rgb(make_image(encoding, h, w, step, 1 - bigendian % 2, data)), rgb)


@pytest.mark.ros
def test_image_message_extremes() -> None:
    """Hand-picked corners the generator may not hit in a bounded run."""
    from stt_ros.ros.conversions import ImageError, image_to_rgb

    cases = [("rgb8", 2**32 - 1, 2**32 - 1, 2**32 - 1, b"\0" * 16, "pixel limit"),  # corrupt header
             ("rgb8", 1, 8192 * 8192 + 1, 3, b"", "pixel limit"),
             ("mono8", 2, 3, 2, b"\0" * 6, "step 2 is smaller"),
             ("bgra8", 4, 4, 16, b"\0" * 63, "data holds 63 bytes"),  # one byte short
             ("rgb8", 0, 5, 15, b"", "empty image"),
             ("16UC1", 2, 2, 4, b"\0" * 8, "unsupported encoding")]
    for encoding, h, w, step, data, message in cases:
        with pytest.raises(ImageError, match=message):
            image_to_rgb(make_image(encoding, h, w, step, 0, data))
    # a padded, odd-width image keeps every pixel in place
    rgb = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    padded = np.concatenate([rgb.reshape(5, 21), np.full((5, 3), 255, np.uint8)], 1)
    np.testing.assert_array_equal(image_to_rgb(make_image("rgb8", 5, 7, 24, 0, padded.tobytes())), rgb)


# ---------------------------------------------------------------------------- compressed images
def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def with_png_size(png: bytes, w: int, h: int) -> bytes:
    """``png`` with its IHDR size replaced (and the chunk's CRC recomputed, so libpng accepts it)."""
    ihdr = struct.pack(">II", w, h) + png[24:29]
    return png[:8] + png_chunk(b"IHDR", ihdr) + png[33:]


def with_jpeg_size(jpeg: bytes, w: int, h: int) -> bytes:
    """``jpeg`` with the size in its start-of-frame segment replaced."""
    data = bytearray(jpeg)
    i = 2
    while True:
        marker, length = data[i + 1], int.from_bytes(data[i + 2:i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            data[i + 5:i + 9] = struct.pack(">HH", h, w)
            return bytes(data)
        i += 2 + length


def compressed(data: bytes, fmt: str = "png"):  # noqa: ANN201
    from sensor_msgs.msg import CompressedImage

    msg = CompressedImage(format=fmt)
    msg.data = data
    return msg


@st.composite
def encoded_images(draw: st.DrawFn) -> tuple[bytes, tuple[int, int]]:
    h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    grey = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    img = np.random.default_rng(seed).integers(0, 256, (h, w) if grey else (h, w, 3), dtype=np.uint8)
    ext = draw(st.sampled_from([".png", ".jpg"]))
    params = [cv2.IMWRITE_JPEG_PROGRESSIVE, 1] if ext == ".jpg" and draw(st.booleans()) else []
    return cv2.imencode(ext, img, params)[1].tobytes(), (h, w)


@st.composite
def damaged(draw: st.DrawFn) -> tuple[bytes, tuple[int, int]]:
    data, size = draw(encoded_images())
    kind = draw(st.sampled_from(["truncate", "flip", "none"]))
    if kind == "truncate":
        data = data[: draw(st.integers(0, len(data)))]
    elif kind == "flip":
        buf = bytearray(data)
        for _ in range(draw(st.integers(1, 6))):
            buf[draw(st.integers(0, len(buf) - 1))] = draw(st.integers(0, 255))
        data = bytes(buf)
    return data, size


@pytest.mark.ros
@settings(max_examples=examples(250))
@given(st.one_of(damaged(), st.binary(max_size=300).map(lambda b: (b, None))))
def test_compressed_decodes_to_its_header_size_or_is_rejected(case: tuple) -> None:
    from stt_ros.ros.conversions import MAX_PIXELS, ImageError, compressed_size, compressed_to_rgb

    data, _ = case
    try:
        rgb = compressed_to_rgb(compressed(data))
    except ImageError as exc:
        assert str(exc)
        event("rejected")
        return
    event("decoded")
    _, w, h = compressed_size(data)  # what was checked before decoding
    assert rgb.dtype == np.uint8 and rgb.shape == (h, w, 3) and h * w <= MAX_PIXELS


@pytest.mark.ros
def test_intact_compressed_images_round_trip() -> None:
    from stt_ros.ros.conversions import compressed_to_rgb

    rgb = np.random.default_rng(0).integers(0, 256, (13, 29, 3), dtype=np.uint8)
    png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()
    np.testing.assert_array_equal(compressed_to_rgb(compressed(png)), rgb)  # lossless
    yy, xx = np.mgrid[0:26, 0:58]  # JPEG is lossy on noise, nearly exact on smooth ramps
    smooth = np.stack([xx * 4, yy * 9, 255 - xx * 4], -1).astype(np.uint8)
    jpg = cv2.imencode(".jpg", cv2.cvtColor(smooth, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes()
    assert np.abs(compressed_to_rgb(compressed(jpg, "jpeg")).astype(int) - smooth).mean() < 8


@pytest.mark.ros
def test_compressed_refusals_name_the_problem() -> None:
    from stt_ros.ros.conversions import ImageError, compressed_to_rgb

    img = np.zeros((8, 8, 3), np.uint8)
    png, jpg = (cv2.imencode(ext, img)[1].tobytes() for ext in (".png", ".jpg"))
    cases = [(b"", "no data"), (b"\x89PNG\r\n\x1a\n", "corrupt or truncated png header"),
             (png[:20], "corrupt or truncated png header"),
             (with_png_size(png, 9000, 9000), "9000x9000 exceeds"),
             (with_png_size(png, 30000, 30000), "png header promises a decompression bomb"),
             (with_png_size(png, 0, 8), "corrupt or truncated png header"),
             (with_jpeg_size(jpg, 65535, 65535), "jpeg header promises a decompression bomb"),
             (with_jpeg_size(jpg, 9000, 9000), "9000x9000 exceeds"),
             (with_jpeg_size(jpg, 8, 0), "corrupt or truncated jpeg header|empty size"),
             (jpg[:4], "corrupt or truncated jpeg header"), (b"\xff\xd8" + b"\x00" * 10, "corrupt or truncated jpeg"),
             (cv2.imencode(".bmp", img)[1].tobytes(), "neither PNG nor JPEG"),
             (cv2.imencode(".webp", img)[1].tobytes(), "neither PNG nor JPEG"),
             (png[:40], "corrupt or truncated png")]
    for data, message in cases:
        with pytest.raises(ImageError, match=message) as exc:
            compressed_to_rgb(compressed(data))
        assert data == b"" or str(exc.value).startswith("cannot decode compressed image (format 'png'")


BOMB_SCRIPT = r"""
import json, resource, struct, sys, zlib
from stt_ros.runtime.images import ImageError, compressed_to_rgb
class Msg:
    format = "png"
def chunk(kind, payload):
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
side = int(sys.argv[1])  # a grey PNG side x side of zeros: ~side*side/1000 bytes compressed
z = zlib.compressobj(9)
rows = [z.compress(b"\0" * (side + 1)) for _ in range(side)] + [z.flush()]
Msg.data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", b"".join(rows)) + chunk(b"IEND", b""))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    out = "decoded %s" % (compressed_to_rgb(Msg).shape,)
except ImageError as exc:
    out = str(exc)
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"bytes": len(Msg.data), "result": out, "peak_growth_mb": grown / 1024}))
"""


@pytest.mark.slow
def test_png_bomb_is_refused_before_decoding() -> None:
    """A 0.4 MB PNG that decodes to 400 megapixels: refused from its header, the decoder never
    allocates it (before the header check the process peaked at 2.3 GB)."""
    out = subprocess.run([sys.executable, "-c", BOMB_SCRIPT, "20000"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["bytes"] < 1_000_000 and "png header promises a decompression bomb" in report["result"]
    assert report["peak_growth_mb"] < 100, report


# ---------------------------------------------------------------------------- resize to the network and back
@settings(max_examples=examples(60))
@given(h=st.one_of(st.integers(1, 300), st.sampled_from([1, 2, 7, 4097])),
       w=st.one_of(st.integers(1, 300), st.sampled_from([1, 3, 9, 20000])),
       mode=st.sampled_from(["stretch", "letterbox"]))
def test_any_image_size_maps_to_the_network_and_back(h: int, w: int, mode: str) -> None:
    pre = Preprocessor(64, 128, mode)
    img = np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    net, geometry = pre(img)
    assert net.shape == (64, 128, 3) and net.dtype == np.uint8
    assert 1 <= geometry.height <= 64 and 1 <= geometry.width <= 128
    class_map = (np.arange(64 * 128) % 19).astype(np.uint8).reshape(64, 128)
    mask = postprocess(class_map, geometry)
    assert mask.shape == (h, w) and mask.dtype == np.uint8
    region = class_map[geometry.top:geometry.top + geometry.height, geometry.left:geometry.left + geometry.width]
    assert set(np.unique(mask)) <= set(np.unique(region))  # nearest neighbour: no invented ids
