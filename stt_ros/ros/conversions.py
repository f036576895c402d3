"""sensor_msgs/Image and CompressedImage <-> numpy, without cv_bridge.

Decoding lives in :mod:`stt_ros.runtime.images` (no ROS imports), shared with bag evaluation so
the node and ``stt-bag-eval`` accept and refuse exactly the same frames; this module re-exports it
and adds the encoder the node publishes with.
"""

from __future__ import annotations

import array

import numpy as np

from stt_ros.runtime.images import (
    ENCODINGS,
    MAX_PIXELS,
    ImageError,
    compressed_size,
    compressed_to_rgb,
    image_to_rgb,
)

__all__ = ["ENCODINGS", "MAX_PIXELS", "ImageError", "compressed_size", "compressed_to_rgb", "image_to_rgb",
           "numpy_to_image"]


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
