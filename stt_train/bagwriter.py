"""rosbag2 (MCAP) writer for labelled video, with the pure-Python ``rosbags`` library (no ROS).

One bag holds ``/camera/image_raw`` (sensor_msgs/msg/Image, rgb8) and ``/camera/labels``
(sensor_msgs/msg/Image, mono8 class ids, e.g. Cityscapes trainIds) with identical headers, so
bag evaluation pairs them by stamp. Facts relied on (checked against rosbags): ``Writer(path, version=9,
storage_plugin=StoragePlugin.MCAP)`` needs a path that does not exist yet; messages are
serialised with the typestore's ``serialize_cdr`` and every field must be set.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

IMAGE_TOPIC = "/camera/image_raw"
LABEL_TOPIC = "/camera/labels"
IMAGE_TYPE = "sensor_msgs/msg/Image"
#: stamps start here (2023-11-14T22:13:20Z) so they are plausible wall-clock times
EPOCH_NS = 1_700_000_000 * 10**9


class SegBagWriter:
    """Write (image, label) pairs to a new rosbag2 MCAP bag at ``path`` (a folder that must not exist)."""

    def __init__(self, path: str | os.PathLike[str], frame_id: str = "camera", image_topic: str = IMAGE_TOPIC,
                 label_topic: str = LABEL_TOPIC, start_ns: int = EPOCH_NS) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.typesys import Stores, get_typestore

        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"bag {self.path} already exists; rosbag2 writes only new bags")
        self.typestore = get_typestore(Stores.ROS2_KILTED)
        self.frame_id, self.start_ns = frame_id, start_ns
        self._writer = Writer(self.path, version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._image = self._writer.add_connection(image_topic, IMAGE_TYPE, typestore=self.typestore)
        self._label = self._writer.add_connection(label_topic, IMAGE_TYPE, typestore=self.typestore)
        self.count = 0

    def _msg(self, array: np.ndarray, encoding: str, stamp_ns: int):
        t = self.typestore.types
        sec, nsec = divmod(stamp_ns, 10**9)
        header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec),
                                          frame_id=self.frame_id)
        h, w = array.shape[:2]
        channels = 1 if array.ndim == 2 else array.shape[2]
        return t[IMAGE_TYPE](header=header, height=h, width=w, encoding=encoding, is_bigendian=0,
                             step=w * channels, data=np.ascontiguousarray(array, np.uint8).reshape(-1))

    def write(self, image: np.ndarray, label: np.ndarray | None, offset_ns: int) -> None:
        """``image`` RGB uint8 (H, W, 3), ``label`` uint8 (H, W) or None; both stamped start + offset."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be RGB uint8 (H, W, 3), got {image.dtype} {image.shape}")
        stamp = self.start_ns + int(offset_ns)
        ser = self.typestore.serialize_cdr
        self._writer.write(self._image, stamp, ser(self._msg(image, "rgb8", stamp), IMAGE_TYPE))
        if label is not None:
            if label.dtype != np.uint8 or label.shape != image.shape[:2]:
                raise ValueError(f"label must be uint8 {image.shape[:2]}, got {label.dtype} {label.shape}")
            self._writer.write(self._label, stamp, ser(self._msg(label, "mono8", stamp), IMAGE_TYPE))
        self.count += 1

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> SegBagWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_bag_frames(path: str | os.PathLike[str]) -> list[tuple[int, str, np.ndarray]]:
    """(log time ns, topic, array) of every Image message of a bag (for tests and inspection): RGB for
    colour images, (H, W) for mono8, read and decoded as bag evaluation reads them."""
    from stt_ros.bag.source import BagSource, typestore
    from stt_ros.runtime.images import image_to_rgb, mono8_to_array

    ts = typestore()
    out = []
    with BagSource(path) as src:
        for m in src.messages():
            msg = ts.deserialize_cdr(m.raw, m.msgtype)
            out.append((m.log_time, m.topic, mono8_to_array(msg) if msg.encoding == "mono8" else image_to_rgb(msg)))
    return out
