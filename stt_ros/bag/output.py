"""The output bag: input images, masks, colour masks, overlays and TemporalConsistency messages on
the node's topic names (``/<camera>/mask`` ...), stamped with the input's header and log time, in
a rosbag2 MCAP bag that RViz, Foxglove and ``ros2 bag play`` open."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from stt_ros.bag.source import IMAGE

TC_TYPE = "stt_ros/msg/TemporalConsistency"
OUTPUTS = ("mask", "color_mask", "overlay", "temporal_consistency")


def output_topics(camera: str) -> dict[str, str]:
    """Topic of each node output of ``camera`` (the node runs in the root namespace)."""
    base = "/" + camera.strip("/")
    return {kind: f"{base}/{kind}" for kind in OUTPUTS}


class OutputBag:
    """A new rosbag2 MCAP bag at ``path`` (a folder that must not exist)."""

    def __init__(self, path: str | os.PathLike[str], typestore) -> None:  # noqa: ANN001
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.path = Path(path)
        self.ts = typestore
        self._writer = Writer(self.path, version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._conns: dict[str, object] = {}
        self.count = 0

    def _conn(self, topic: str, msgtype: str):  # noqa: ANN202
        conn = self._conns.get(topic)
        if conn is None:
            conn = self._conns[topic] = self._writer.add_connection(topic, msgtype, typestore=self.ts)
        return conn

    def write_raw(self, topic: str, msgtype: str, log_time: int, raw: bytes) -> None:
        self._writer.write(self._conn(topic, msgtype), log_time, raw)
        self.count += 1

    def image_message(self, array: np.ndarray, header):  # noqa: ANN001, ANN201
        """sensor_msgs/Image (rosbags) of a (H, W) mono8 or (H, W, 3) rgb8 array."""
        h, w = array.shape[:2]
        channels = 1 if array.ndim == 2 else array.shape[2]
        encoding = {1: "mono8", 3: "rgb8"}[channels]
        return self.ts.types[IMAGE](header=header, height=h, width=w, encoding=encoding, is_bigendian=0,
                                    step=w * channels, data=np.ascontiguousarray(array, np.uint8).reshape(-1))

    def write_image(self, topic: str, array: np.ndarray, header, log_time: int) -> None:  # noqa: ANN001
        self.write_raw(topic, IMAGE, log_time, self.ts.serialize_cdr(self.image_message(array, header), IMAGE))

    def write_tc(self, topic: str, header, log_time: int, **fields) -> None:  # noqa: ANN001, ANN003
        msg = self.ts.types[TC_TYPE](header=header, **fields)
        self.write_raw(topic, TC_TYPE, log_time, self.ts.serialize_cdr(msg, TC_TYPE))

    def close(self) -> None:
        self._writer.close()
