"""Image message payloads -> numpy arrays, for any object with sensor_msgs/Image fields.

Shared by the node (rclpy messages) and bag evaluation (rosbags messages), so both accept and
reject exactly the same inputs. ROS 2's cv_bridge is not on PyPI (PyPI's ``cv-bridge`` is ROS 1's,
broken on numpy 2), so this module converts by hand, following cv_bridge's conversion table,
names and bit-depth rule (ros-perception/vision_opencv, rolling, cv_bridge/src/cv_bridge.cpp:
``getCvType``, ``getConversionCodes``, ``getConversionCode``, ``matFromImage``,
``toCvCopyImpl``). A numpy view of the message buffer avoids a copy for unpadded rgb8.

- :func:`image_to_rgb`: what the node and bag evaluation feed the network, RGB uint8, from any
  encoding in :data:`ENCODINGS`.
- :func:`image_to_array`: cv_bridge's ``imgmsg_to_cv2`` without ROS: the message's own array
  (``passthrough``) or a conversion to another encoding, with cv_bridge's refusals.
"""

from __future__ import annotations

import io
import re
import struct
import warnings

import cv2
import numpy as np

#: refuse images above this many pixels (a corrupt header must not allocate gigabytes)
MAX_PIXELS = 8192 * 8192


class ImageError(ValueError):
    """An image message cannot be used; the message says why."""


class CvBridgeError(ImageError, TypeError):
    """What the cv_bridge-compatible functions raise: catchable as cv_bridge's ``CvBridgeError``
    (a TypeError there) and as :class:`ImageError`."""


# ---------------------------------------------------------------------------- encodings
#: the colour families of cv_bridge's ``getEncoding`` (8- and 16-bit members share one).
#: ``uyvy``/``yuyv`` are sensor_msgs' newer names (image_encodings.hpp marks ``yuv422`` and
#: ``yuv422_yuy2`` deprecated in their favour) for the same byte orders; cv_bridge (rolling,
#: 2024-02) does not know them yet, they are accepted here as the aliases they are.
FAMILY: dict[str, str] = {
    "mono8": "gray", "mono16": "gray",
    "rgb8": "rgb", "rgb16": "rgb", "bgr8": "bgr", "bgr16": "bgr",
    "rgba8": "rgba", "rgba16": "rgba", "bgra8": "bgra", "bgra16": "bgra",
    "yuv422": "uyvy", "uyvy": "uyvy", "yuv422_yuy2": "yuyv", "yuyv": "yuyv",
    **{f"bayer_{p}{d}": f"bayer_{p}" for p in ("rggb", "bggr", "gbrg", "grbg") for d in (8, 16)},
}

#: (source family, destination family) -> the OpenCV code cv_bridge converts with. OpenCV names
#: a Bayer code after the pattern of the second row's second and third pixels, so a sensor whose
#: first row starts R G (rggb) is OpenCV's "BayerBG" (cv_bridge: BAYER_RGGB -> COLOR_BayerBG2RGB).
_CODES: dict[tuple[str, str], int] = {}
for _src, _names in {"gray": "GRAY", "rgb": "RGB", "bgr": "BGR", "rgba": "RGBA", "bgra": "BGRA"}.items():
    for _dst, _dname in {"gray": "GRAY", "rgb": "RGB", "bgr": "BGR", "rgba": "RGBA", "bgra": "BGRA"}.items():
        if _src != _dst:
            _CODES[_src, _dst] = getattr(cv2, f"COLOR_{_names}2{_dname}")
for _src, _suffix in {"uyvy": "UYVY", "yuyv": "YUY2"}.items():
    for _dst, _dname in {"gray": "GRAY", "rgb": "RGB", "bgr": "BGR", "rgba": "RGBA", "bgra": "BGRA"}.items():
        _CODES[_src, _dst] = getattr(cv2, f"COLOR_YUV2{_dname}_{_suffix}")
for _pattern, _opencv in {"rggb": "BG", "bggr": "RG", "gbrg": "GR", "grbg": "GB"}.items():
    for _dst, _dname in {"gray": "GRAY", "rgb": "RGB", "bgr": "BGR"}.items():
        _CODES[f"bayer_{_pattern}", _dst] = getattr(cv2, f"COLOR_Bayer{_opencv}2{_dname}")
#: families cv_bridge converts within (its SAME_FORMAT entries: grey, RGB, BGR, RGBA, BGRA, YUV422;
#: the YUYV alias added here); Bayer 8 <-> 16 is not among them
_SAME_FAMILY_OK = {"gray", "rgb", "bgr", "rgba", "bgra", "uyvy", "yuyv"}

_NAMED_TYPES: dict[str, tuple[str, int]] = {  # cv_bridge's getCvType for the named encodings
    "rgb8": ("8U", 3), "bgr8": ("8U", 3), "rgba8": ("8U", 4), "bgra8": ("8U", 4), "mono8": ("8U", 1),
    "rgb16": ("16U", 3), "bgr16": ("16U", 3), "rgba16": ("16U", 4), "bgra16": ("16U", 4), "mono16": ("16U", 1),
    "yuv422": ("8U", 2), "uyvy": ("8U", 2), "yuv422_yuy2": ("8U", 2), "yuyv": ("8U", 2),
    **{f"bayer_{p}{d}": (f"{d}U", 1) for p in ("rggb", "bggr", "gbrg", "grbg") for d in (8, 16)},
}
_DEPTHS = {"8U": np.uint8, "8S": np.int8, "16U": np.uint16, "16S": np.int16, "32S": np.int32,
           "32F": np.float32, "64F": np.float64}
_GENERIC = re.compile(r"(8U|8S|16U|16S|32S|32F|64F)(?:C([0-9]+))?")
_MAX_CHANNELS = 512  # OpenCV's CV_CN_MAX

#: what :func:`image_to_rgb` (the node, bag evaluation) accepts: encoding -> (channels, bytes per
#: channel). 16UC1 (depth-style pipelines) is read as grey like mono16, with cv_bridge's 16 -> 8
#: bit rule; cv_bridge itself converts 16UC1 only to other non-colour types (16UC1 -> 8UC1 scales
#: the same way). 8UC1/8UC3 are not here: cv_bridge refuses to give them a colour meaning
#: ("[8UC3] is not a color format...") and so does this module.
ENCODINGS: dict[str, tuple[int, int]] = {
    **{name: (channels, int(depth[:-1]) // 8) for name, (depth, channels) in _NAMED_TYPES.items()},
    "16UC1": (1, 2),
}
_AS_COLOR = {"16UC1": "mono16"}  # read as this colour encoding by image_to_rgb


def encoding_type(encoding: str) -> tuple[np.dtype, int]:
    """(numpy dtype, channels) an encoding holds, as cv_bridge's ``getCvType``: the named ROS
    encodings, then OpenCV's generic ``8UC3``, ``32FC1``, ``16U`` (one channel) ..."""
    if encoding in _NAMED_TYPES:
        depth, channels = _NAMED_TYPES[encoding]
        return np.dtype(_DEPTHS[depth]), channels
    m = _GENERIC.fullmatch(encoding)
    if m is None:
        raise ImageError(f"unrecognized image encoding {encoding!r} (cv_bridge's names: "
                         f"{', '.join(_NAMED_TYPES)}, or an OpenCV type such as 8UC3, 16UC1, 32FC1)")
    channels = int(m.group(2)) if m.group(2) is not None else 1
    if not 1 <= channels <= _MAX_CHANNELS:
        raise ImageError(f"encoding {encoding!r}: {channels} channels (OpenCV holds 1 to {_MAX_CHANNELS})")
    return np.dtype(_DEPTHS[m.group(1)]), channels


def bit_depth(encoding: str) -> int:
    """Bits per channel value (sensor_msgs' ``bitDepth``)."""
    return encoding_type(encoding)[0].itemsize * 8


def _pixels(msg, encoding: str, dtype: np.dtype, channels: int) -> np.ndarray:  # noqa: ANN001
    """The message's pixels, (H, W) or (H, W, C) of ``dtype`` in native byte order, after the size
    checks. A view of the message data where no byte swap is needed."""
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise ImageError(f"empty image {w}x{h}")
    if h * w > MAX_PIXELS:
        raise ImageError(f"image {w}x{h} exceeds the {MAX_PIXELS} pixel limit")
    row_bytes = w * channels * dtype.itemsize
    if step < row_bytes:
        per = f"width*channels = {w * channels}" if dtype.itemsize == 1 else \
            f"width*channels*bytes = {w}*{channels}*{dtype.itemsize} = {row_bytes}"
        raise ImageError(f"step {step} is smaller than {per} for {encoding}")
    data = np.frombuffer(msg.data, np.uint8)
    if data.size < step * h:
        raise ImageError(f"data holds {data.size} bytes, step*height needs {step * h}")
    rows = data[: step * h].reshape(h, step)[:, :row_bytes]
    if dtype.itemsize > 1:
        # matFromImage: data in the other byte order than this machine's is swapped
        order = ">" if msg.is_bigendian else "<"
        rows = np.ascontiguousarray(rows).view(dtype.newbyteorder(order))
        if dtype.newbyteorder(order) != dtype.newbyteorder("=") or not rows.flags.aligned:
            rows = rows.astype(dtype.newbyteorder("="))  # swapped, or aligned for OpenCV
    elif dtype != np.uint8:
        rows = rows.view(dtype)  # 8SC*
    return rows.reshape(h, w, channels) if channels > 1 else rows


def _check_pairs(msg, encoding: str) -> None:  # noqa: ANN001
    """4:2:2 YUV shares one chroma pair between two pixels: an odd width is malformed (and OpenCV
    asserts on it)."""
    if FAMILY.get(encoding) in ("uyvy", "yuyv") and int(msg.width) % 2 and int(msg.height) > 0:
        raise ImageError(f"{msg.encoding} pairs pixels (4:2:2 chroma): its width must be even, got {int(msg.width)}")


def _convert_depth(img: np.ndarray, src: str, dst: str) -> np.ndarray:
    """cv_bridge's SAME_FORMAT step (toCvCopyImpl): the channels kept, the values converted to the
    destination's depth, ``convertTo`` with scale 65535/255 from 8 to 16 bits, 255/65535 from 16 to
    8 bits (a 16-bit v becomes round(v / 257): 65535 -> 255, 257 * k -> k; no value lies half way),
    otherwise unscaled; rounding to nearest and saturating into integer destinations."""
    dtype = encoding_type(dst)[0]
    src_bits, dst_bits = bit_depth(src), bit_depth(dst)
    if img.dtype == dtype:
        return img.copy()
    if src_bits == 8 and dst_bits == 16:
        scale = 65535.0 / 255.0
    elif src_bits == 16 and dst_bits == 8:
        scale = 255.0 / 65535.0
    else:
        scale = 1.0
    if img.dtype == np.uint16 and dtype == np.uint8:  # the common case, exactly and in integers
        return ((img.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    out = img.astype(np.float64) * scale
    if dtype.kind == "f":
        return out.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.rint(np.nan_to_num(out, nan=0.0)), info.min, info.max).astype(dtype)


def convert_encoding(img: np.ndarray, src: str, dst: str) -> np.ndarray:
    """``img`` (in encoding ``src``) converted to encoding ``dst`` the way cv_bridge's
    ``cvtColor``/``toCvCopy`` do: a colour conversion from cv_bridge's table, followed by the depth
    step when the depths differ; between non-colour (generic OpenCV) types only the depth step,
    with the channel count kept. Refusals name the problem as cv_bridge does."""
    if dst in ("", "passthrough") or dst == src:
        return img.copy()
    _, src_channels = encoding_type(src)
    _, dst_channels = encoding_type(dst)
    src_color, dst_color = src in FAMILY, dst in FAMILY
    if not src_color or not dst_color:
        if not src_color and dst_color:
            raise ImageError(f"[{src}] is not a color format but [{dst}] is: the conversion does not make sense "
                             f"(as cv_bridge: give a colour encoding to the message, or ask for an OpenCV type)")
        if src_channels != dst_channels:
            raise ImageError(f"[{src}] and [{dst}] do not have the same number of channels "
                             f"({src_channels} and {dst_channels})")
        return _convert_depth(img, src, dst)
    key = (FAMILY[src], FAMILY[dst])
    if key[0] == key[1]:
        if key[0] not in _SAME_FAMILY_OK:
            raise ImageError(f"unsupported conversion from [{src}] to [{dst}]")
        return _convert_depth(img, src, dst)
    if key not in _CODES:
        raise ImageError(f"unsupported conversion from [{src}] to [{dst}]")
    out = cv2.cvtColor(np.ascontiguousarray(img) if img.ndim == 2 else img, _CODES[key])
    if bit_depth(src) != bit_depth(dst):
        # the colour step kept the source depth; name the intermediate by the source's depth
        out = _convert_depth(out, src, dst)
    return out


def image_to_array(msg, desired_encoding: str = "passthrough") -> np.ndarray:  # noqa: ANN001
    """cv_bridge's ``imgmsg_to_cv2`` without ROS: ``passthrough`` gives the message's pixels as
    they are, (H, W) for one channel, (H, W, C) otherwise, of the encoding's dtype in this machine's
    byte order (a copy); another encoding converts as :func:`convert_encoding`. Raises
    :class:`CvBridgeError` (also an ImageError) saying why."""
    try:
        dtype, channels = encoding_type(msg.encoding)
        _check_pairs(msg, msg.encoding)
        img = _pixels(msg, msg.encoding, dtype, channels)
        if desired_encoding in ("", "passthrough"):
            return img.copy()
        encoding_type(desired_encoding)
        return convert_encoding(img, msg.encoding, desired_encoding)
    except CvBridgeError:
        raise
    except ImageError as exc:
        raise CvBridgeError(str(exc)) from None


def image_to_rgb(msg) -> np.ndarray:  # noqa: ANN001 (sensor_msgs/Image, rclpy or rosbags)
    """RGB uint8 (H, W, 3) from a sensor_msgs/Image in any encoding of :data:`ENCODINGS`. A view of
    the message data for unpadded rgb8; cv_bridge's conversion to rgb8 otherwise (16-bit data scaled
    to 8 bits as cv_bridge does, big-endian data swapped)."""
    enc = msg.encoding
    if enc not in ENCODINGS:
        raise ImageError(f"unsupported encoding {enc!r}; supported: {', '.join(ENCODINGS)}")
    as_color = _AS_COLOR.get(enc, enc)
    _check_pairs(msg, as_color)
    dtype, channels = encoding_type(as_color)
    img = _pixels(msg, enc, dtype, channels)
    if enc == "rgb8":
        return img
    return convert_encoding(img, as_color, "rgb8")


def mono8_to_array(msg) -> np.ndarray:  # noqa: ANN001
    """(H, W) uint8 from a mono8 sensor_msgs/Image (class ids of a mask or label)."""
    if msg.encoding not in ("mono8", "8UC1"):
        raise ImageError(f"expected a mono8 image of class ids, got encoding {msg.encoding!r}")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0 or h * w > MAX_PIXELS:
        raise ImageError(f"bad mask size {w}x{h}")
    data = np.frombuffer(msg.data, np.uint8)
    if step < w or data.size < step * h:
        raise ImageError(f"mask data holds {data.size} bytes, step {step} x height {h} needs {step * h}")
    return data[: step * h].reshape(h, step)[:, :w]


def compressed_size(data: bytes | memoryview | np.ndarray) -> tuple[str, int, int]:
    """(format, width, height) of a PNG or JPEG from its header, without decoding the pixels.

    Pillow reads only the header when it opens an image (OpenCV has no such call)."""
    from PIL import Image, UnidentifiedImageError

    raw = memoryview(data).cast("B")
    head = bytes(raw[:8])
    kind = "png" if head.startswith(b"\x89PNG\r\n\x1a\n") else "jpeg" if head.startswith(b"\xff\xd8") else None
    if kind is None:
        raise ImageError(f"neither PNG nor JPEG (starts with {head.hex()}); the compressed transport carries jpeg "
                         f"or png")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # MAX_PIXELS is checked by the caller
            with Image.open(io.BytesIO(raw), formats=("PNG", "JPEG")) as im:
                return kind, int(im.size[0]), int(im.size[1])
    except Image.DecompressionBombError as exc:
        raise ImageError(f"the {kind} header promises a decompression bomb ({exc})") from None
    except UnidentifiedImageError:  # its message names only the BytesIO object
        raise ImageError(f"corrupt or truncated {kind} header") from None
    except (OSError, SyntaxError, ValueError, struct.error, EOFError) as exc:
        raise ImageError(f"corrupt or truncated {kind} header ({exc})") from None


def compressed_to_rgb(msg) -> np.ndarray:  # noqa: ANN001 (sensor_msgs/CompressedImage)
    """RGB uint8 from a sensor_msgs/CompressedImage holding a PNG or JPEG (what ROS's compressed
    image transport sends). The size in the file's header is checked against :data:`MAX_PIXELS`
    before anything is decoded, so a small message (a "decompression bomb": 0.4 MB of PNG can
    promise 400 megapixels) cannot make the decoder allocate gigabytes."""
    buf = np.frombuffer(msg.data, np.uint8)
    if buf.size == 0:
        raise ImageError("compressed image holds no data")
    what = f"cannot decode compressed image (format {str(msg.format)[:40]!r}, {buf.size} bytes)"
    try:
        kind, width, height = compressed_size(buf)
    except ImageError as exc:
        raise ImageError(f"{what}: {exc}") from None
    if width <= 0 or height <= 0:
        raise ImageError(f"{what}: the {kind} header gives an empty size {width}x{height}")
    if width * height > MAX_PIXELS:
        raise ImageError(f"{what}: {kind} image {width}x{height} exceeds the {MAX_PIXELS} pixel limit "
                         f"(refused before decoding)")
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None:
        raise ImageError(f"{what}: the {kind} data is corrupt or truncated")
    if img.shape[0] * img.shape[1] > MAX_PIXELS:
        raise ImageError(f"decoded image {img.shape[1]}x{img.shape[0]} exceeds the pixel limit")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
