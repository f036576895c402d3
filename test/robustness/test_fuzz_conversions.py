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
#: every encoding image_to_rgb takes: (channels, bytes per channel), written out here apart from the module
SPECS = {"rgb8": (3, 1), "bgr8": (3, 1), "rgba8": (4, 1), "bgra8": (4, 1), "mono8": (1, 1),
         "rgb16": (3, 2), "bgr16": (3, 2), "rgba16": (4, 2), "bgra16": (4, 2), "mono16": (1, 2), "16UC1": (1, 2),
         "yuv422": (2, 1), "uyvy": (2, 1), "yuv422_yuy2": (2, 1), "yuyv": (2, 1),
         **{f"bayer_{p}{d}": (1, d // 8) for p in ("rggb", "bggr", "gbrg", "grbg") for d in (8, 16)}}
#: the encodings a reference computes with OpenCV (4:2:2 chroma, demosaicing): the code cv_bridge's table names
OPENCV = {"yuv422": cv2.COLOR_YUV2RGB_UYVY, "uyvy": cv2.COLOR_YUV2RGB_UYVY, "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2,
          "yuyv": cv2.COLOR_YUV2RGB_YUY2,
          **{f"bayer_{p}{d}": code for p, code in (("rggb", cv2.COLOR_BayerBG2RGB), ("bggr", cv2.COLOR_BayerRG2RGB),
                                                    ("gbrg", cv2.COLOR_BayerGR2RGB), ("grbg", cv2.COLOR_BayerGB2RGB))
             for d in (8, 16)}}
UNSUPPORTED = ["32FC1", "8UC3", "8UC1", "16SC1", "RGB8", "", " rgb8", "rgb8\x00", "nv12", "bayer_rggb", "yuv420",
               "mono16 "]
HUGE = [2**31 - 1, 2**31, 2**32 - 1, 8193 * 8193, 65536]


def to8(v: np.ndarray) -> np.ndarray:
    """16 -> 8 bits as cv_bridge (convertTo, scale 255/65535, round to nearest), in integers."""
    return ((v.astype(np.int64) * 255 * 2 + 65535) // (2 * 65535)).astype(np.uint8)


def reference_rgb(encoding: str, h: int, w: int, step: int, bigendian: int, data: bytes) -> np.ndarray:
    """What image_to_rgb must return for a valid message: numpy only for the channel orders and
    bit depths, OpenCV's own conversion for 4:2:2 YUV and Bayer mosaics."""
    c, b = SPECS[encoding]
    raw = np.frombuffer(data, np.uint8)[: step * h].reshape(h, step)[:, : w * c * b].copy()
    px = raw.view(">u2" if bigendian else "<u2").astype(np.uint16) if b == 2 else raw
    px = px.reshape(h, w, c)
    if encoding in OPENCV:
        out = cv2.cvtColor(px[..., 0] if c == 1 else px, OPENCV[encoding])
        return to8(out) if b == 2 else out
    name = encoding.rstrip("0123456789") if encoding != "16UC1" else "mono"
    out = {"rgb": lambda: px, "bgr": lambda: px[..., ::-1], "rgba": lambda: px[..., :3],
           "bgra": lambda: px[..., 2::-1], "mono": lambda: np.repeat(px, 3, axis=2)}[name]()
    return to8(out) if b == 2 else out


def is_valid(encoding: str, h: int, w: int, step: int, data: bytes) -> bool:
    from stt_ros.ros.conversions import MAX_PIXELS

    if encoding not in SPECS or h <= 0 or w <= 0 or h * w > MAX_PIXELS:
        return False
    c, b = SPECS[encoding]
    return step >= w * c * b and len(data) >= step * h and not (encoding in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv")
                                                                  and w % 2)


@st.composite
def image_messages(draw: st.DrawFn) -> tuple:
    if draw(st.booleans()):  # half the time a well-formed message (odd sizes, padded rows, extra data)
        encoding = draw(st.sampled_from(list(SPECS)))
        c, b = SPECS[encoding]
        h, w = draw(st.integers(1, 24)), draw(st.integers(1, 24))
        if encoding in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv"):
            w += w % 2
        step = w * c * b + draw(st.sampled_from([0, 0, 1, 3, 8]))  # odd padding: unaligned 16-bit rows
        data = draw(st.binary(min_size=step * h, max_size=step * h + draw(st.sampled_from([0, 0, 5]))))
        return encoding, h, w, step, draw(st.integers(0, 255)), data
    encoding = draw(st.one_of(st.sampled_from(list(SPECS)), st.sampled_from(UNSUPPORTED), st.text(max_size=8)))
    h = draw(st.one_of(st.integers(0, 24), st.sampled_from(HUGE)))
    w = draw(st.one_of(st.integers(0, 24), st.sampled_from(HUGE)))
    c, b = SPECS.get(encoding, (3, 1))
    row = w * c * b
    step = draw(st.one_of(st.just(row), st.integers(0, 120), st.sampled_from([row - 1, row + 1, row + 7, w * c]),
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


def swapped(data: bytes) -> bytes:
    """Every byte pair swapped (the other byte order), an odd last byte kept."""
    even = len(data) // 2 * 2
    return np.frombuffer(data[:even], np.uint8).reshape(-1, 2)[:, ::-1].tobytes() + data[even:]


@pytest.mark.ros
@settings(max_examples=examples(400))
@given(image_messages())
def test_image_message_converts_exactly_or_is_rejected(fields: tuple) -> None:
    from stt_ros.ros.conversions import ImageError, image_to_rgb

    encoding, h, w, step, bigendian, data = fields
    msg = make_image(*fields)
    valid = is_valid(encoding, h, w, step, data)
    event("valid" if valid else "invalid")
    if not valid:
        with pytest.raises(ImageError) as exc:
            image_to_rgb(msg)
        assert str(exc.value)  # says why
        return
    event(encoding)
    rgb = image_to_rgb(msg)
    assert rgb.dtype == np.uint8 and rgb.shape == (h, w, 3)
    np.testing.assert_array_equal(rgb, reference_rgb(encoding, h, w, step, bigendian, data))
    other = 1 - min(bigendian, 1)
    if SPECS[encoding][1] == 1:  # 8-bit encodings have no byte order: the flag changes nothing
        np.testing.assert_array_equal(image_to_rgb(make_image(encoding, h, w, step, other, data)), rgb)
    elif step % 2 == 0:  # 16-bit: the same values written in the other byte order, flagged so, decode the same
        np.testing.assert_array_equal(image_to_rgb(make_image(encoding, h, w, step, other, swapped(data))), rgb)


@pytest.mark.ros
def test_image_message_extremes() -> None:
    """Hand-picked corners the generator may not hit in a bounded run."""
    from stt_ros.ros.conversions import ImageError, image_to_rgb

    cases = [("rgb8", 2**32 - 1, 2**32 - 1, 2**32 - 1, b"\0" * 16, "pixel limit"),  # corrupt header
             ("rgb8", 1, 8192 * 8192 + 1, 3, b"", "pixel limit"),
             ("bayer_grbg16", 2**32 - 1, 2**32 - 1, 2**32 - 1, b"\0" * 16, "pixel limit"),
             ("mono8", 2, 3, 2, b"\0" * 6, "step 2 is smaller"),
             ("mono16", 2, 3, 5, b"\0" * 12, r"step 5 is smaller than width\*channels\*bytes = 3\*1\*2 = 6"),
             ("bgra8", 4, 4, 16, b"\0" * 63, "data holds 63 bytes"),  # one byte short
             ("rgba16", 2, 2, 16, b"\0" * 31, "data holds 31 bytes"),
             ("rgb8", 0, 5, 15, b"", "empty image"),
             ("yuv422_yuy2", 2, 3, 6, b"\0" * 12, "width must be even, got 3"),
             ("yuv422", 0, 3, 6, b"", "empty image"),
             ("32FC1", 2, 2, 8, b"\0" * 16, "unsupported encoding '32FC1'; supported: rgb8, bgr8, .*yuv422_yuy2"),
             ("8UC3", 2, 2, 6, b"\0" * 12, "unsupported encoding '8UC3'")]
    for encoding, h, w, step, data, message in cases:
        with pytest.raises(ImageError, match=message):
            image_to_rgb(make_image(encoding, h, w, step, 0, data))
    # a padded, odd-width image keeps every pixel in place
    rgb = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    padded = np.concatenate([rgb.reshape(5, 21), np.full((5, 3), 255, np.uint8)], 1)
    np.testing.assert_array_equal(image_to_rgb(make_image("rgb8", 5, 7, 24, 0, padded.tobytes())), rgb)
    # 16-bit extremes: 0 and 65535 map to 0 and 255, 257 * k to k, the halfway points (257 * k + 128.5) split, in
    # either byte order
    grey = np.array([[0, 65535, 257 * 7, 128], [129, 385, 65406, 65407]], np.uint16)
    want = np.repeat(np.array([[0, 255, 7, 0], [1, 1, 254, 255]], np.uint8)[..., None], 3, 2)
    for order, flag in (("<u2", 0), (">u2", 1)):
        msg = make_image("mono16", 2, 4, 8, flag, grey.astype(order).tobytes())
        np.testing.assert_array_equal(image_to_rgb(msg), want)


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
