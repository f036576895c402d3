"""Image message payloads -> RGB numpy arrays, for any object with sensor_msgs/Image fields.

Shared by the node (rclpy messages) and bag evaluation (rosbags messages), so both accept and
reject exactly the same inputs. ROS 2's cv_bridge is not on PyPI; these few encodings are all the
product needs, and a numpy view of the message buffer avoids a copy when the rows are not padded.
"""

from __future__ import annotations

import io
import struct
import warnings

import cv2
import numpy as np

#: encoding -> (channels, conversion to RGB or None when already RGB)
ENCODINGS: dict[str, tuple[int, int | None]] = {
    "rgb8": (3, None),
    "bgr8": (3, cv2.COLOR_BGR2RGB),
    "rgba8": (4, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, cv2.COLOR_BGRA2RGB),
    "mono8": (1, cv2.COLOR_GRAY2RGB),
}
#: refuse images above this many pixels (a corrupt header must not allocate gigabytes)
MAX_PIXELS = 8192 * 8192


class ImageError(ValueError):
    """An image message cannot be used; the message says why."""


def image_to_rgb(msg) -> np.ndarray:  # noqa: ANN001 (sensor_msgs/Image, rclpy or rosbags)
    """RGB uint8 (H, W, 3) from a sensor_msgs/Image. A view of the message data for unpadded
    rgb8; one conversion otherwise."""
    enc = msg.encoding
    if enc not in ENCODINGS:
        raise ImageError(f"unsupported encoding {enc!r}; supported: {', '.join(ENCODINGS)}")
    channels, code = ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise ImageError(f"empty image {w}x{h}")
    if h * w > MAX_PIXELS:
        raise ImageError(f"image {w}x{h} exceeds the {MAX_PIXELS} pixel limit")
    if step < w * channels:
        raise ImageError(f"step {step} is smaller than width*channels = {w * channels} for {enc}")
    data = np.frombuffer(msg.data, np.uint8)
    if data.size < step * h:
        raise ImageError(f"data holds {data.size} bytes, step*height needs {step * h}")
    rows = data[: step * h].reshape(h, step)[:, : w * channels]
    img = rows.reshape(h, w, channels) if channels > 1 else rows
    if code is None:
        return img
    return cv2.cvtColor(np.ascontiguousarray(img) if channels == 1 else img, code)


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
