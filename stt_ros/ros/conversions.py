"""sensor_msgs/Image and CompressedImage <-> numpy, without cv_bridge.

Decoding lives in :mod:`stt_ros.runtime.images` (no ROS imports), shared with bag evaluation so
the node and ``stt-bag-eval`` accept and refuse exactly the same frames; this module re-exports it
and adds the encoders: :func:`numpy_to_image` (what the node publishes with) and cv_bridge's
``imgmsg_to_cv2`` / ``cv2_to_imgmsg`` under its names and with its behaviour (ROS 2's cv_bridge is
not installable here; PyPI's ``cv-bridge`` is ROS 1's and broken on numpy 2).

:func:`image_from_cdr` reads a serialized Image or CompressedImage (what the node's raw subscription
receives) without copying its pixels: ``deserialize_message`` copies the data twice (into a bytes
object, then into the message's ``array('B')``), 0.4-1.9 ms for a 512x1024 rgb8 frame on this
machine, against 3 us here. What it cannot read exactly as ``deserialize_message`` would, it leaves
to it (the caller falls back), so both give the same fields and the same refusals.
"""

from __future__ import annotations

import array
import struct
import sys
from dataclasses import dataclass

import numpy as np

from stt_ros.runtime.images import (
    ENCODINGS,
    MAX_PIXELS,
    CvBridgeError,
    ImageError,
    compressed_size,
    compressed_to_rgb,
    encoding_type,
    image_to_array,
    image_to_rgb,
)

__all__ = ["ENCODINGS", "MAX_PIXELS", "CvBridgeError", "CdrCompressedImage", "CdrImage", "ImageError",
           "compressed_size", "compressed_to_rgb", "cv2_to_imgmsg", "image_from_cdr", "image_to_rgb", "imgmsg_to_cv2",
           "numpy_to_image"]

#: numpy dtype -> OpenCV depth name (cv_bridge's numpy_type_to_cvtype)
_CV_DEPTH = {"uint8": "8U", "int8": "8S", "uint16": "16U", "int16": "16S", "int32": "32S", "float32": "32F",
             "float64": "64F"}


@dataclass(frozen=True)
class CdrImage:
    """sensor_msgs/Image's fields read from its CDR bytes; ``data`` a read-only view of those bytes
    (what :func:`stt_ros.runtime.images.image_to_rgb` and the other decoders take)."""

    header: object  # std_msgs/Header
    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: memoryview


@dataclass(frozen=True)
class CdrCompressedImage:
    """sensor_msgs/CompressedImage's fields read from its CDR bytes; ``data`` a read-only view."""

    header: object  # std_msgs/Header
    format: str
    data: memoryview


_U32 = struct.Struct("<I")
_STAMP = struct.Struct("<iI")


class _Reader:
    """Little-endian CDR (XCDR1, as Fast DDS serializes ROS 2 messages): 4-byte values aligned to 4
    from the end of the 4-byte encapsulation header. Every read checks the bounds (IndexError)."""

    def __init__(self, raw: bytes | memoryview) -> None:
        self.view = memoryview(raw).cast("B")
        self.pos = 4

    def u32(self) -> int:
        self.pos += -(self.pos - 4) % 4
        if self.pos + 4 > len(self.view):
            raise IndexError("u32")
        (value,) = _U32.unpack_from(self.view, self.pos)
        self.pos += 4
        return value

    def u8(self) -> int:
        if self.pos >= len(self.view):
            raise IndexError("u8")
        self.pos += 1
        return self.view[self.pos - 1]

    def octets(self) -> memoryview:
        n = self.u32()
        if self.pos + n > len(self.view):
            raise IndexError("sequence")
        self.pos += n
        return self.view[self.pos - n:self.pos]

    def string(self) -> str:
        """A string whose bytes are UTF-8 with one NUL, the last (what every ROS 2 writer sends);
        ValueError for anything else, which deserialize_message reads its own way."""
        raw = self.octets()
        if len(raw) == 0 or raw[-1] != 0:
            raise ValueError("string without its terminating NUL")
        text = bytes(raw[:-1])
        if b"\0" in text:
            raise ValueError("NUL inside a string")
        return text.decode("utf-8")  # UnicodeDecodeError is a ValueError

    def header(self) -> object:
        from builtin_interfaces.msg import Time
        from std_msgs.msg import Header

        if self.pos + 8 > len(self.view):
            raise IndexError("stamp")
        sec, nanosec = _STAMP.unpack_from(self.view, self.pos)
        self.pos += 8
        return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=self.string())


def image_from_cdr(raw: bytes | memoryview, compressed: bool = False) -> CdrImage | CdrCompressedImage | None:
    """A serialized sensor_msgs/Image (or, ``compressed``, CompressedImage) as :class:`CdrImage`
    (:class:`CdrCompressedImage`), its pixels a view of ``raw``, not a copy. None where
    ``deserialize_message`` must decide: another encapsulation than little-endian CDR with no
    options (Fast CDR reads the options' low bits as padding at the end), a field running past the
    end, a string that is not plain UTF-8 ending in its one NUL. Bytes after the data are ignored,
    as ``deserialize_message`` ignores them."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 1 or raw[2] != 0 or raw[3] != 0:
        return None
    reader = _Reader(raw)
    try:
        header = reader.header()
        if compressed:
            fmt = reader.string()
            return CdrCompressedImage(header, fmt, reader.octets())
        height, width = reader.u32(), reader.u32()
        encoding = reader.string()
        is_bigendian = reader.u8()
        step = reader.u32()
        return CdrImage(header, height, width, encoding, is_bigendian, step, reader.octets())
    except (IndexError, ValueError):
        return None


def _bytes(arr: np.ndarray) -> array.array:
    out = array.array("B")
    out.frombytes(memoryview(np.ascontiguousarray(arr)).cast("B"))
    return out


def numpy_to_image(arr: np.ndarray, encoding: str, header) -> object:  # noqa: ANN001
    """sensor_msgs/Image from a (H, W) mono8 or (H, W, 3) rgb8 array, with ``header`` copied."""
    from sensor_msgs.msg import Image

    if arr.dtype != np.uint8:
        raise ValueError(f"expected uint8 data, got {arr.dtype}")
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    if (encoding, channels) not in (("mono8", 1), ("rgb8", 3)):
        raise ValueError(f"{encoding} does not fit an array of shape {arr.shape}")
    msg = Image()
    msg.header = header
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = msg.width * channels
    msg.data = _bytes(arr)
    return msg


def imgmsg_to_cv2(msg, desired_encoding: str = "passthrough") -> np.ndarray:  # noqa: ANN001
    """cv_bridge's ``CvBridge().imgmsg_to_cv2``: the message's pixels as a numpy array in its own
    encoding (``passthrough``: (H, W) for one channel, (H, W, C) otherwise, this machine's byte
    order), or converted to ``desired_encoding`` (``rgb8``, ``bgr8``, ``mono8``, ``mono16``, ...)
    with cv_bridge's conversion table and 16 <-> 8 bit scaling. Raises :class:`CvBridgeError`."""
    return image_to_array(msg, desired_encoding)


def cv2_to_imgmsg(arr: np.ndarray, encoding: str = "passthrough", header=None) -> object:  # noqa: ANN001
    """cv_bridge's ``CvBridge().cv2_to_imgmsg``: a sensor_msgs/Image holding ``arr``. With
    ``passthrough`` the encoding is the array's OpenCV type (``8UC3``, ``16UC1``, ``32FC1``, ...);
    a named encoding must have the array's type (``rgb8``/``bgr8``: uint8 with 3 channels,
    ``mono16``: uint16 (H, W), ``yuv422``: uint8 with 2 channels, ``bayer_rggb8``: uint8 (H, W)),
    else :class:`CvBridgeError`. ``is_bigendian`` follows the array's byte order; ``header`` is
    copied when given."""
    from sensor_msgs.msg import Image

    if not isinstance(arr, np.ndarray | np.generic):
        raise TypeError(f"expected a numpy array, got {type(arr).__name__}")
    if arr.ndim not in (2, 3):
        raise CvBridgeError(f"expected an (H, W) or (H, W, C) array, got shape {arr.shape}")
    depth = _CV_DEPTH.get(arr.dtype.name)
    if depth is None:
        raise CvBridgeError(f"numpy dtype {arr.dtype} has no OpenCV type (use one of {', '.join(_CV_DEPTH)})")
    channels = 1 if arr.ndim == 2 else int(arr.shape[2])
    cv_type = f"{depth}C{channels}"
    if encoding == "passthrough":
        encoding = cv_type
    else:
        try:
            dtype, want_channels = encoding_type(encoding)
        except ImageError as exc:
            raise CvBridgeError(str(exc)) from None
        if (_CV_DEPTH[dtype.name], want_channels) != (depth, channels):
            raise CvBridgeError(f"encoding specified as {encoding}, but image has incompatible type {cv_type} "
                                f"({encoding} needs {_CV_DEPTH[dtype.name]}C{want_channels})")
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    order = arr.dtype.byteorder
    msg.is_bigendian = int(order == ">" or (order == "=" and sys.byteorder == "big"))
    msg.step = msg.width * channels * arr.dtype.itemsize
    msg.data = _bytes(arr)
    return msg
