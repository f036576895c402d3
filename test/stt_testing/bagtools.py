"""Helpers of the bag-evaluation tests: bag writers for other layouts (compressed images, sqlite3,
unrelated topics), a runner for the CLI, and readers of output bags."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """stt-bag-eval in a subprocess (as a user runs it); DDS settings come from the test env."""
    return subprocess.run([sys.executable, "-m", "stt_ros.bag.cli", *map(str, args), "--no-progress"], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def typestore():
    from stt_ros.bag.source import typestore as ts

    return ts()


def header(ts, stamp_ns: int, frame_id: str = "camera"):  # noqa: ANN001, ANN201
    t = ts.types
    sec, nsec = divmod(stamp_ns, 10**9)
    return t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec), frame_id=frame_id)


def image_msg(ts, rgb: np.ndarray, stamp_ns: int):  # noqa: ANN001, ANN201
    h, w = rgb.shape[:2]
    return ts.types["sensor_msgs/msg/Image"](header=header(ts, stamp_ns), height=h, width=w, encoding="rgb8",
                                             is_bigendian=0, step=w * 3, data=rgb.reshape(-1).copy())


def compressed_msg(ts, rgb: np.ndarray | None, stamp_ns: int, fmt: str = "png", data: bytes | None = None):  # noqa: ANN001, ANN201
    if data is None:
        ok, buf = cv2.imencode(f".{fmt}", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        assert ok
        data = buf.tobytes()
    return ts.types["sensor_msgs/msg/CompressedImage"](header=header(ts, stamp_ns), format=fmt,
                                                       data=np.frombuffer(data, np.uint8).copy())


def write_bag(path: Path, messages: list[tuple[str, str, int, object]], storage: str = "mcap") -> Path:
    """A rosbag2 bag of (topic, msgtype, log time ns, rosbags message) in the given storage."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    ts = typestore()
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    conns: dict[str, object] = {}
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        for topic, msgtype, log_time, msg in messages:
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=ts)
            writer.write(conns[topic], log_time, ts.serialize_cdr(msg, msgtype))
    return path


def bag_frames(bag: Path) -> list[tuple[int, np.ndarray]]:
    """(log time, RGB) of the SynthDrive bag's camera frames."""
    from stt_ros.bag.source import BagSource

    ts = typestore()
    out = []
    with BagSource(bag) as src:
        for m in src.messages(["/camera/image_raw"]):
            msg = ts.deserialize_cdr(m.raw, m.msgtype)
            out.append((m.log_time, np.asarray(msg.data, np.uint8).reshape(msg.height, msg.width, 3)))
    return out


def messages_by_stamp(out_bag: Path, topic: str) -> dict[int, object]:
    """header stamp -> deserialized message of ``topic`` in a bag."""
    from stt_ros.bag.source import BagSource

    ts = typestore()
    res = {}
    with BagSource(out_bag) as src:
        for m in src.messages([topic]):
            msg = ts.deserialize_cdr(m.raw, m.msgtype)
            res[msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec] = msg
    return res


def masks_by_stamp(out_bag: Path, topic: str = "/camera/mask") -> dict[int, np.ndarray]:
    return {stamp: np.asarray(msg.data, np.uint8).reshape(msg.height, msg.width).copy()
            for stamp, msg in messages_by_stamp(out_bag, topic).items()}

def tc_by_stamp(out_bag: Path, topic: str = "/camera/temporal_consistency") -> dict[int, tuple]:
    """header stamp -> (tc_valid, tc_miou, intersections, unions) of the bag's TemporalConsistency messages."""
    msgs = messages_by_stamp(out_bag, topic)
    return {stamp: (bool(m.tc_valid), float(m.tc_miou), np.asarray(m.tc_class_intersection).tolist(),
                    np.asarray(m.tc_class_union).tolist()) for stamp, m in msgs.items()}
