"""Camera encodings beyond RGB (issue 23): 4:2:2 YUV, Bayer mosaics, 16-bit grey and colour, each
decoded to the RGB OpenCV's own conversion gives (cv_bridge's table), bit-exact, and segmented to
the same mask as that RGB through the runtime; big-endian 16-bit equal to little-endian;
cv_bridge's imgmsg_to_cv2/cv2_to_imgmsg names, conversions and refusals.

Messages are duck-typed (types.SimpleNamespace with sensor_msgs/Image's fields), as bag evaluation
hands rosbags messages to the same code; only cv2_to_imgmsg needs sensor_msgs (marked ``ros``)."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from stt_ros.config import STTConfig
from stt_ros.runtime import StreamingSegmenter, create_backend
from stt_ros.runtime.images import ENCODINGS, CvBridgeError, ImageError, image_to_array, image_to_rgb

H, W = 48, 96  # the camera; the network runs at 64x128
PATTERNS = ("rggb", "bggr", "gbrg", "grbg")
#: OpenCV names a Bayer code after the second row's pattern: an rggb sensor is OpenCV's BayerBG
BAYER_CODE = {"rggb": cv2.COLOR_BayerBG2RGB, "bggr": cv2.COLOR_BayerRG2RGB, "gbrg": cv2.COLOR_BayerGR2RGB,
              "grbg": cv2.COLOR_BayerGB2RGB}
YUV_CODE = {"yuv422": cv2.COLOR_YUV2RGB_UYVY, "uyvy": cv2.COLOR_YUV2RGB_UYVY,
            "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2, "yuyv": cv2.COLOR_YUV2RGB_YUY2}
CHANNEL_ORDER = {"rgb": None, "bgr": cv2.COLOR_RGB2BGR, "rgba": cv2.COLOR_RGB2RGBA, "bgra": cv2.COLOR_RGB2BGRA,
                 "mono": cv2.COLOR_RGB2GRAY}


def scene(h: int = H, w: int = W, seed: int = 0) -> np.ndarray:
    """A smooth colourful RGB image using the full 0..255 range."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (9, 9), 3)
    return cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX)


def message(encoding: str, pixels: np.ndarray, bigendian: bool = False, pad: int = 0) -> SimpleNamespace:
    """A sensor_msgs/Image-shaped object holding ``pixels`` (rows padded by ``pad`` bytes)."""
    h, w = pixels.shape[:2]
    raw = np.ascontiguousarray(pixels.astype(pixels.dtype.newbyteorder(">" if bigendian else "<")))
    rows = raw.view(np.uint8).reshape(h, -1)
    if pad:
        rows = np.concatenate([rows, np.full((h, pad), 0xAB, np.uint8)], 1)
    return SimpleNamespace(height=h, width=w, encoding=encoding, is_bigendian=int(bigendian), step=rows.shape[1],
                           data=rows.tobytes())


def to16(img8: np.ndarray) -> np.ndarray:
    return img8.astype(np.uint16) * 257  # 0..255 -> 0..65535, exactly invertible


def opencv_to8(img16: np.ndarray) -> np.ndarray:
    """OpenCV's convertTo(CV_8U, 255/65535), cv_bridge's 16 -> 8 bit step (convertScaleAbs is the
    same for non-negative values)."""
    return cv2.convertScaleAbs(img16, alpha=255.0 / 65535.0)


def yuv422(rgb: np.ndarray, order: str) -> np.ndarray:
    """(H, W, 2) 4:2:2 frame of ``rgb`` from OpenCV's RGB -> YUV (I420, BT.601) of the image with each
    row doubled, so its 2x2 chroma average is the 1x2 average 4:2:2 needs. ``order``: uyvy or yuyv."""
    h, w = rgb.shape[:2]
    i420 = cv2.cvtColor(np.repeat(rgb, 2, axis=0), cv2.COLOR_RGB2YUV_I420)
    y = i420[: 2 * h].reshape(2 * h, w)[::2]
    u = i420[2 * h: 2 * h + h // 2].reshape(h, w // 2)
    v = i420[2 * h + h // 2:].reshape(h, w // 2)
    planes = [u, y[:, 0::2], v, y[:, 1::2]] if order == "uyvy" else [y[:, 0::2], u, y[:, 1::2], v]
    return np.stack(planes, -1).reshape(h, w, 2)


def mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """The Bayer frame a sensor with ``pattern`` (first row's two sites, then the second row's) records."""
    out = np.empty(rgb.shape[:2], rgb.dtype)
    for k, colour in enumerate(pattern):
        y, x = divmod(k, 2)
        out[y::2, x::2] = rgb[y::2, x::2, "rgb".index(colour)]
    return out


def frames(rgb: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray, bool]]:
    """encoding -> (the frame's pixels, the RGB OpenCV's reference conversion of the frame gives,
    whether that RGB is ``rgb`` itself, i.e. the encoding lost nothing)."""
    grey = cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    out: dict[str, tuple[np.ndarray, np.ndarray, bool]] = {}
    for name, code in CHANNEL_ORDER.items():
        px8 = rgb if code is None else cv2.cvtColor(rgb, code)
        ref = grey if name == "mono" else rgb
        out[f"{name}8"] = (px8, ref, name != "mono")
        out[f"{name}16"] = (to16(px8), ref, name != "mono")
    out["16UC1"] = out["mono16"]
    for name, code in YUV_CODE.items():
        px = yuv422(rgb, "uyvy" if code == cv2.COLOR_YUV2RGB_UYVY else "yuyv")
        out[name] = (px, cv2.cvtColor(px, code), False)
    for pattern, code in BAYER_CODE.items():
        px = mosaic(rgb, pattern)
        out[f"bayer_{pattern}8"] = (px, cv2.cvtColor(px, code), False)
        px16 = mosaic(to16(rgb), pattern)  # cv_bridge's order: demosaic at 16 bits, then to 8
        out[f"bayer_{pattern}16"] = (px16, opencv_to8(cv2.cvtColor(px16, code)), False)
    return out


def test_every_supported_encoding_is_covered() -> None:
    assert set(frames(scene())) == set(ENCODINGS)


@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_decodes_to_opencvs_conversion_bit_exact(encoding: str, pad: int) -> None:
    rgb = scene()
    pixels, reference, lossless = frames(rgb)[encoding]
    out = image_to_rgb(message(encoding, pixels, pad=pad))
    assert out.dtype == np.uint8 and out.shape == (H, W, 3)
    np.testing.assert_array_equal(out, reference)
    if lossless:
        np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize("encoding", [e for e in sorted(ENCODINGS) if ENCODINGS[e][1] == 2])
@pytest.mark.parametrize("pad", [0, 1, 4])
def test_big_endian_16_bit_equals_little_endian(encoding: str, pad: int) -> None:
    """Random 16-bit values (not only multiples of 257), odd row padding included (unaligned rows)."""
    channels = ENCODINGS[encoding][0]
    shape = (H, W) if channels == 1 else (H, W, channels)
    pixels = np.random.default_rng(pad).integers(0, 65536, shape, dtype=np.uint16)
    little, big = message(encoding, pixels, False, pad), message(encoding, pixels, True, pad)
    assert little.data != big.data
    np.testing.assert_array_equal(image_to_rgb(big), image_to_rgb(little))
    np.testing.assert_array_equal(image_to_array(big), pixels)
    np.testing.assert_array_equal(image_to_array(little), pixels)


def test_16_to_8_bits_is_opencvs_convert_with_cv_bridges_scale() -> None:
    """Every 16-bit value: grey mono16 decodes to convertTo(CV_8U, 255/65535), cv_bridge's rule."""
    values = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    np.testing.assert_array_equal(image_to_rgb(message("mono16", values))[..., 1], opencv_to8(values))
    np.testing.assert_array_equal(image_to_array(message("16UC1", values), "8UC1"), opencv_to8(values))


def test_the_bayer_patterns_and_yuv_byte_orders_are_the_right_ones() -> None:
    """Independent of OpenCV's names: a uniform colour demosaics to itself under its own pattern
    only, a smooth scene nearly so; 4:2:2 of a scene whose chroma is constant per pixel pair
    decodes back within the BT.601 rounding, and read in the other byte order it does not."""
    colour = np.full((H, W, 3), (200, 90, 30), np.uint8)
    rgb = scene(seed=3)
    for pattern in PATTERNS:
        np.testing.assert_array_equal(image_to_rgb(message(f"bayer_{pattern}8", mosaic(colour, pattern))), colour)
        np.testing.assert_array_equal(image_to_rgb(message(f"bayer_{pattern}16", mosaic(to16(colour), pattern))),
                                      colour)
        errors = {p: np.abs(image_to_rgb(message(f"bayer_{p}8", mosaic(rgb, pattern))).astype(int) - rgb).mean()
                  for p in PATTERNS}
        assert min(errors, key=errors.get) == pattern and errors[pattern] < 5, errors
    pairs = np.repeat(rgb[:, ::2], 2, axis=1)
    for encoding, order in (("yuv422", "uyvy"), ("uyvy", "uyvy"), ("yuv422_yuy2", "yuyv"), ("yuyv", "yuyv")):
        frame = yuv422(pairs, order)
        assert np.abs(image_to_rgb(message(encoding, frame)).astype(int) - pairs).max() <= 3
        wrong = "yuv422_yuy2" if order == "uyvy" else "yuv422"
        assert np.abs(image_to_rgb(message(wrong, frame)).astype(int) - pairs).mean() > 20


@pytest.fixture(scope="module")
def segment():
    """The mask the runtime gives an RGB array; the same input (values, strides, contiguity) is run
    once (the model is per-frame, each call starts a fresh stream)."""
    torch.manual_seed(0)
    backend = create_backend(STTConfig(model="bise18", input_height=64, input_width=128))
    done: dict[tuple, np.ndarray] = {}

    def run(rgb: np.ndarray) -> np.ndarray:
        key = (rgb.tobytes(), rgb.strides, rgb.flags.c_contiguous, rgb.dtype.str)
        if key not in done:
            done[key] = StreamingSegmenter(backend).process(rgb).mask
        return done[key]

    return run


def test_every_encoding_segments_like_its_rgb(segment) -> None:
    """Through the runtime (resize to 64x128, per-frame BiSeNet, mask back to 48x96): each
    encoding's frame gives the mask of OpenCV's RGB for it; lossless ones the mask of the scene."""
    rgb = scene(seed=5)
    scene_mask = segment(rgb)
    assert len(np.unique(scene_mask)) > 1  # a mask that can differ
    for encoding, (pixels, reference, lossless) in frames(rgb).items():
        mask = segment(image_to_rgb(message(encoding, pixels, pad=2)))
        np.testing.assert_array_equal(mask, segment(reference), err_msg=encoding)
        if lossless:
            np.testing.assert_array_equal(mask, scene_mask, err_msg=encoding)


def test_refusals_name_the_problem() -> None:
    rgb = scene()
    odd = message("yuv422_yuy2", yuv422(rgb, "yuyv")[:, :-1])  # one pixel short of a pair
    with pytest.raises(ImageError, match="width must be even, got 95"):
        image_to_rgb(odd)
    short = message("mono16", to16(rgb[..., 0]))
    short.data = short.data[:-1]
    with pytest.raises(ImageError, match=f"data holds {H * W * 2 - 1} bytes, step\\*height needs {H * W * 2}"):
        image_to_rgb(short)
    narrow = message("bgra16", to16(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)))
    narrow.step = W * 4 * 2 - 2
    with pytest.raises(ImageError, match=f"step {W * 8 - 2} is smaller than width\\*channels\\*bytes"):
        image_to_rgb(narrow)
    for encoding in ("8UC3", "32FC1", "nv12", "mono12"):
        with pytest.raises(ImageError, match=f"unsupported encoding '{encoding}'; supported: rgb8, .*bayer_grbg16"):
            image_to_rgb(message(encoding, rgb))


# ---------------------------------------------------------------------------- cv_bridge's API
def test_imgmsg_to_cv2_passthrough_is_the_messages_own_array() -> None:
    from stt_ros.ros.conversions import imgmsg_to_cv2

    rgb = scene()
    for encoding, (pixels, _, _) in frames(rgb).items():
        got = imgmsg_to_cv2(message(encoding, pixels, pad=5))
        assert got.dtype == pixels.dtype and got.shape == pixels.shape, encoding
        np.testing.assert_array_equal(got, pixels, err_msg=encoding)
    for encoding, arr in (("8UC3", rgb), ("32FC1", rgb[..., 0].astype(np.float32) / 7),
                          ("16SC2", rgb[..., :2].astype(np.int16) - 128), ("64FC1", rgb[..., 1] * 1.5),
                          ("8SC1", (rgb[..., 2] // 2).astype(np.int8) - 64),
                          ("32SC4", cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA).astype(np.int32) * -99999),
                          ("16U", to16(rgb[..., 0]))):
        for big in (False, True):
            got = imgmsg_to_cv2(message(encoding, arr, bigendian=big, pad=2))
            np.testing.assert_array_equal(got, arr, err_msg=encoding)
            assert got.dtype == arr.dtype and got.dtype.isnative


def test_imgmsg_to_cv2_converts_like_cv_bridge() -> None:
    """rgb8/bgr8/mono8 (and the 16-bit ones) from the encodings cameras publish: OpenCV's code from
    cv_bridge's table, then the depth step."""
    from stt_ros.ros.conversions import imgmsg_to_cv2

    rgb = scene()
    table = frames(rgb)
    for encoding, (pixels, reference, _) in table.items():
        msg = message(encoding, pixels)
        if encoding == "16UC1":
            continue  # not a colour encoding for cv_bridge: below
        np.testing.assert_array_equal(imgmsg_to_cv2(msg, "rgb8"), reference, err_msg=encoding)
        np.testing.assert_array_equal(imgmsg_to_cv2(msg, "bgr8"), reference[..., ::-1], err_msg=encoding)
    np.testing.assert_array_equal(imgmsg_to_cv2(message("rgb8", rgb), "mono8"), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    np.testing.assert_array_equal(imgmsg_to_cv2(message("bgra8", table["bgra8"][0]), "mono8"),
                                  cv2.cvtColor(table["bgra8"][0], cv2.COLOR_BGRA2GRAY))
    uyvy = table["yuv422"][0]
    np.testing.assert_array_equal(imgmsg_to_cv2(message("yuv422", uyvy), "mono8"),
                                  cv2.cvtColor(uyvy, cv2.COLOR_YUV2GRAY_UYVY))
    np.testing.assert_array_equal(imgmsg_to_cv2(message("yuv422", uyvy), "rgba8"),
                                  cv2.cvtColor(uyvy, cv2.COLOR_YUV2RGBA_UYVY))
    bayer = table["bayer_gbrg8"][0]
    np.testing.assert_array_equal(imgmsg_to_cv2(message("bayer_gbrg8", bayer), "mono8"),
                                  cv2.cvtColor(bayer, cv2.COLOR_BayerGR2GRAY))
    grey16 = np.random.default_rng(1).integers(0, 65536, (H, W), dtype=np.uint16)
    np.testing.assert_array_equal(imgmsg_to_cv2(message("mono16", grey16), "mono8"), opencv_to8(grey16))
    np.testing.assert_array_equal(imgmsg_to_cv2(message("mono8", rgb[..., 0]), "mono16"), to16(rgb[..., 0]))
    np.testing.assert_array_equal(imgmsg_to_cv2(message("rgb8", rgb), "bgr16"), to16(rgb[..., ::-1]))
    np.testing.assert_array_equal(imgmsg_to_cv2(message("16UC1", grey16), "8UC1"), opencv_to8(grey16))
    # non-colour to non-colour of the same channels: converted unscaled, rounded and saturated
    floats = np.array([[-3.0, 0.5, 1.5, 2.49], [254.6, 300.0, 7.0, np.nan]], np.float32)
    np.testing.assert_array_equal(imgmsg_to_cv2(message("32FC1", floats), "8UC1"),
                                  np.array([[0, 0, 2, 2], [255, 255, 7, 0]], np.uint8))
    np.testing.assert_array_equal(imgmsg_to_cv2(message("rgb8", rgb), "8UC3"), rgb)  # colour -> its type


@pytest.mark.parametrize(("encoding", "desired", "why"), [
    ("16UC1", "mono8", r"\[16UC1\] is not a color format but \[mono8\] is"),
    ("8UC3", "rgb8", r"\[8UC3\] is not a color format but \[rgb8\] is"),
    ("8UC3", "8UC1", "do not have the same number of channels"),
    ("rgb8", "8UC1", "do not have the same number of channels"),
    ("bayer_rggb8", "rgba8", r"unsupported conversion from \[bayer_rggb8\] to \[rgba8\]"),
    ("bayer_rggb8", "bayer_rggb16", "unsupported conversion"),
    ("rgb8", "yuv422", r"unsupported conversion from \[rgb8\] to \[yuv422\]"),
    ("rgb8", "rgb12", "unrecognized image encoding 'rgb12'"),
    ("nv12", "rgb8", "unrecognized image encoding 'nv12'"),
])
def test_imgmsg_to_cv2_refuses_as_cv_bridge(encoding: str, desired: str, why: str) -> None:
    from stt_ros.ros.conversions import imgmsg_to_cv2

    pixels = scene()[..., :1 if encoding.startswith(("16UC1", "bayer", "nv12")) else 3]
    if encoding == "16UC1":
        pixels = to16(pixels)
    with pytest.raises(CvBridgeError, match=why) as exc:
        imgmsg_to_cv2(message(encoding, pixels[..., 0] if pixels.shape[2] == 1 else pixels), desired)
    assert isinstance(exc.value, TypeError) and isinstance(exc.value, ImageError)  # cv_bridge's and ours


@pytest.mark.ros
def test_cv2_to_imgmsg_round_trips_every_encoding() -> None:
    from std_msgs.msg import Header

    from stt_ros.ros.conversions import cv2_to_imgmsg, imgmsg_to_cv2

    header = Header(frame_id="cam")
    header.stamp.sec = 12
    for encoding, (pixels, reference, _) in frames(scene()).items():
        msg = cv2_to_imgmsg(pixels, encoding, header)
        assert (msg.encoding, msg.height, msg.width, msg.is_bigendian) == (encoding, H, W, 0)
        assert msg.step == W * pixels.itemsize * (pixels.shape[2] if pixels.ndim == 3 else 1)
        assert msg.header.frame_id == "cam" and msg.header.stamp.sec == 12
        np.testing.assert_array_equal(imgmsg_to_cv2(msg), pixels, err_msg=encoding)
        np.testing.assert_array_equal(image_to_rgb(msg), reference, err_msg=encoding)  # rclpy's message too
    # passthrough names the array's OpenCV type; a big-endian array says so
    cases = [(np.zeros((2, 3), np.uint8), "8UC1"), (np.zeros((2, 3, 3), np.uint8), "8UC3"),
             (np.zeros((2, 3, 2), np.int16), "16SC2"), (np.zeros((2, 3), np.float32), "32FC1"),
             (np.zeros((2, 3, 4), np.float64), "64FC4"), (np.zeros((2, 3, 1), np.int8), "8SC1")]
    for arr, name in cases:
        assert cv2_to_imgmsg(arr).encoding == name
    big = np.arange(24, dtype=">u2").reshape(2, 3, 4)
    msg = cv2_to_imgmsg(big, "rgba16")
    assert msg.is_bigendian == 1 and msg.step == 3 * 4 * 2
    np.testing.assert_array_equal(imgmsg_to_cv2(msg), big)
    assert imgmsg_to_cv2(msg).dtype.isnative


@pytest.mark.ros
@pytest.mark.parametrize(("arr", "encoding", "why"), [
    (np.zeros((2, 3, 3), np.uint8), "mono8", "encoding specified as mono8, but image has incompatible type 8UC3"),
    (np.zeros((2, 3, 3), np.uint8), "rgb16", "incompatible type 8UC3 \\(rgb16 needs 16UC3\\)"),
    (np.zeros((2, 4, 2), np.uint16), "yuv422", "incompatible type 16UC2"),
    (np.zeros((2, 3), np.uint16), "bayer_rggb8", "incompatible type 16UC1"),
    (np.zeros((2, 3), np.float16), "passthrough", "float16 has no OpenCV type"),
    (np.zeros((2, 3, 3, 1), np.uint8), "passthrough", "shape"),
    (np.zeros((2, 3), np.uint8), "mono9", "unrecognized image encoding 'mono9'"),
])
def test_cv2_to_imgmsg_refuses_mismatches(arr: np.ndarray, encoding: str, why: str) -> None:
    from stt_ros.ros.conversions import cv2_to_imgmsg

    with pytest.raises(CvBridgeError, match=why):
        cv2_to_imgmsg(arr, encoding)
    with pytest.raises(TypeError, match="expected a numpy array"):
        cv2_to_imgmsg([[1, 2]], "mono8")
