"""Play a bag's camera topics to stt_node over DDS and record what it publishes.

The online half of ``stt-bag-eval --through-node`` (:mod:`stt_ros.bag.online` starts it as
``python -m stt_ros.ros.replay SPEC.json`` and reads its outputs; the bag layer imports no ROS):

1. starts stt_node in a subprocess with the spec's parameter file (its log goes to a file);
2. publishes each camera's messages as recorded (serialized CDR, untouched) at the bag's timing
   divided by the rate factor, after one warm-up frame per camera whose outputs are discarded
   and a ``~/reset`` call, so the first played frame meets an empty ring buffer as offline;
3. records every mask, colour mask, overlay and TemporalConsistency message the node publishes,
   with its receive time, into a rosbag2 MCAP bag, and writes a JSON summary: the send time of
   every frame by header stamp, the node's exit code, the resets before play.

DDS: ROS_AUTOMATIC_DISCOVERY_RANGE is forced to LOCALHOST for this process and the node; the
domain is the environment's ROS_DOMAIN_ID (the caller picks one).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from stt_ros.bag.evaluate import decode_frame
from stt_ros.bag.output import output_topics
from stt_ros.bag.source import COMPRESSED, BagError, BagSource, typestore
from stt_ros.runtime.images import ImageError

READY_TIMEOUT_S = 180.0  # model load on a cold machine included
WARMUP_TIMEOUT_S = 120.0


class Recorder:
    """Raw subscriptions to every output of every camera; messages kept with receive times."""

    def __init__(self, node, cameras: list[dict]) -> None:  # noqa: ANN001
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        from stt_ros.msg import TemporalConsistency

        qos = QoSProfile(depth=1000, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
        self.lock = threading.Lock()
        self.messages: list[tuple[str, str, int, bytes]] = []  # topic, msgtype, receive ns, raw
        self.subs = []
        self.last_tc: dict[str, bytes] = {}
        for cam in cameras:
            for kind, topic in output_topics(cam["name"]).items():
                msg_cls, msgtype = (TemporalConsistency, "stt_ros/msg/TemporalConsistency") \
                    if kind == "temporal_consistency" else (Image, "sensor_msgs/msg/Image")
                self.subs.append(node.create_subscription(
                    msg_cls, topic, lambda raw, t=topic, mt=msgtype: self._on(t, mt, raw), qos, raw=True))

    def _on(self, topic: str, msgtype: str, raw: bytes) -> None:
        now = time.time_ns()
        with self.lock:
            self.messages.append((topic, msgtype, now, raw))

    def take(self) -> list[tuple[str, str, int, bytes]]:
        with self.lock:
            out, self.messages = self.messages, []
        return out

    def matched(self) -> bool:
        return all(s.get_publisher_count() > 0 for s in self.subs)


def stamp_of(ts, raw: bytes, msgtype: str) -> int:  # noqa: ANN001
    h = ts.deserialize_cdr(raw, msgtype).header.stamp
    return int(h.sec) * 1_000_000_000 + int(h.nanosec)


def replay(spec: dict, progress: bool = True) -> dict:
    """Run the replay described by ``spec`` (see :func:`stt_ros.bag.online.run_online`)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image
    from std_srvs.srv import Trigger
    from tqdm import tqdm

    from stt_ros.ros.node import configure_middleware

    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    configure_middleware()  # the large-image shared-memory profile for this (sending) participant
    ts = typestore()
    cameras = spec["cameras"]
    summary: dict = {"sent": {}, "resets_before_play": {}, "fatal": "", "damage": "", "node_returncode": None}
    log = open(spec["node_log"], "w")  # noqa: SIM115 (closed in finally)
    node_cmd = [sys.executable, "-m", "stt_ros.ros.node", "--ros-args", "--params-file", spec["params_file"]]
    node_proc = subprocess.Popen(node_cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    context = rclpy.Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    node = rclpy.create_node("stt_bag_replay", context=context)
    executor.add_node(node)
    spin = threading.Thread(target=_spin, args=(executor, context), daemon=True)
    spin.start()
    try:
        recorder = Recorder(node, cameras)
        pub_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        pubs = {c["publish_topic"]: node.create_publisher(CompressedImage if c["msgtype"] == COMPRESSED else Image,
                                                          c["publish_topic"], pub_qos) for c in cameras}
        by_topic = {c["topic"]: c for c in cameras}

        def node_failed() -> str:
            if node_proc.poll() is not None:
                log.flush()
                tail = Path(spec["node_log"]).read_text(errors="replace").strip().splitlines()[-5:]
                return f"stt_node exited with code {node_proc.returncode}: " + " | ".join(tail)
            return ""

        deadline = time.monotonic() + READY_TIMEOUT_S
        while not (recorder.matched() and all(p.get_subscription_count() > 0 for p in pubs.values())):
            if (err := node_failed()) or time.monotonic() > deadline:
                summary["fatal"] = err or f"stt_node did not connect within {READY_TIMEOUT_S:.0f} s"
                return summary
            time.sleep(0.05)

        source = BagSource(spec["bag"])
        # warm-up: the first frame of each camera once, outputs discarded, then ~/reset
        firsts: dict[str, bytes] = {}  # the first frame of each camera that decodes (the node rejects others)
        try:
            for n, m in enumerate(source.messages(list(by_topic))):
                if m.topic not in firsts:
                    try:
                        decode_frame(ts, m.raw, m.msgtype)
                        firsts[m.topic] = m.raw
                    except ImageError:
                        pass
                if len(firsts) == len(by_topic) or n > 200 * len(by_topic):
                    break
        except BagError:
            pass
        tc_topics = {output_topics(c["name"])["temporal_consistency"]: c for c in cameras}
        deadline = time.monotonic() + WARMUP_TIMEOUT_S
        seen: set[str] = set()
        next_send = 0.0
        while len(seen) < len(firsts):
            if time.monotonic() >= next_send:  # again every second: a best-effort reader that has only
                next_send = time.monotonic() + 1.0  # just matched may miss the first message
                for topic, raw in firsts.items():
                    if output_topics(by_topic[topic]["name"])["temporal_consistency"] not in seen:
                        pubs[by_topic[topic]["publish_topic"]].publish(raw)
            seen |= {t for t, *_ in recorder.take() if t in tc_topics}
            if (err := node_failed()) or time.monotonic() > deadline:
                summary["fatal"] = err or f"stt_node did not answer the warm-up frames within {WARMUP_TIMEOUT_S:.0f} s"
                return summary
            time.sleep(0.02)
        client = node.create_client(Trigger, "/stt_node/reset")
        if not client.wait_for_service(timeout_sec=30):
            summary["fatal"] = "stt_node's ~/reset service did not appear"
            return summary
        future = client.call_async(Trigger.Request())
        deadline = time.monotonic() + 30
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        recorder.take()  # late warm-up outputs
        summary["resets_before_play"] = {c["name"]: 1 if c["topic"] in firsts else 0 for c in cameras}

        # play, writing the node's outputs to the recording as they arrive (nothing accumulates)
        total = sum(source.topics[t].count for t in by_topic)
        sent: dict[str, list[tuple[int, int]]] = {c["publish_topic"]: [] for c in cameras}
        rate = float(spec.get("rate", 1.0))
        t_first = start = None
        last_stamp: dict[str, int] = {}  # TC topic -> stamp of the last frame sent on its camera
        answered: set[str] = set()
        with RecordingWriter(Path(spec["recording"]), ts) as rec, \
                tqdm(total=total, unit="frame", desc="replay through stt_node", disable=not progress,
                     dynamic_ncols=True) as bar:
            try:
                for m in source.messages(list(by_topic)):
                    if t_first is None:
                        t_first, start = m.log_time, time.monotonic()
                    due = start + (m.log_time - t_first) / 1e9 / rate
                    while (delay := due - time.monotonic()) > 0:
                        rec.write(recorder.take())
                        time.sleep(min(delay, 0.02))
                    cam = by_topic[m.topic]
                    try:
                        stamp = stamp_of(ts, m.raw, m.msgtype)
                    except Exception:  # noqa: BLE001 (undecodable: played anyway, the node rejects it)
                        stamp = -1
                    pubs[cam["publish_topic"]].publish(m.raw)
                    sent[cam["publish_topic"]].append((stamp, time.time_ns()))
                    last_stamp[output_topics(cam["name"])["temporal_consistency"]] = stamp
                    rec.write(recorder.take())
                    bar.update(1)
                    if err := node_failed():
                        summary["fatal"] = err
                        break
            except BagError as exc:
                summary["damage"] = str(exc)
            summary["sent"] = sent
            # drain: until each camera's last frame is answered, or the node stays silent for 15 s
            quiet_since = time.monotonic()
            while len(answered) < len(last_stamp) and not summary["fatal"]:
                new = recorder.take()
                if new:
                    quiet_since = time.monotonic()
                    rec.write(new)
                for topic, msgtype, _, raw in new:
                    if topic in last_stamp and stamp_of(ts, raw, msgtype) == last_stamp[topic]:
                        answered.add(topic)
                if time.monotonic() - quiet_since > 15 or node_failed():
                    break
                time.sleep(0.02)
            time.sleep(0.3)
            rec.write(recorder.take())
            summary["recorded"] = rec.count
        source.close()
        summary["unanswered"] = sorted(set(last_stamp) - answered)
        return summary
    finally:
        if node_proc.poll() is None:
            node_proc.send_signal(signal.SIGINT)
            try:
                node_proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                node_proc.kill()
                node_proc.wait()
        summary["node_returncode"] = node_proc.returncode
        log.close()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        spin.join(timeout=5)


def _spin(executor, context) -> None:  # noqa: ANN001
    while context.ok():
        try:
            executor.spin_once(timeout_sec=0.05)
        except Exception:  # noqa: BLE001 (shutdown races)
            if not context.ok():
                return
            raise


class RecordingWriter:
    """The recording: a rosbag2 MCAP bag of raw output messages, log time = receive time."""

    def __init__(self, path: Path, ts) -> None:  # noqa: ANN001
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.ts = ts
        self._writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
        self._conns: dict[str, object] = {}
        self.count = 0

    def __enter__(self) -> RecordingWriter:
        self._writer.open()
        return self

    def write(self, messages: list[tuple[str, str, int, bytes]]) -> None:
        for topic, msgtype, receive_ns, raw in messages:
            if topic not in self._conns:
                self._conns[topic] = self._writer.add_connection(topic, msgtype, typestore=self.ts)
            self._writer.write(self._conns[topic], receive_ns, raw)
            self.count += 1

    def __exit__(self, *exc: object) -> None:
        self._writer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", help="JSON spec written by stt_ros.bag.online.run_online")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    spec = json.loads(Path(args.spec).read_text())
    try:
        summary = replay(spec, progress=not args.no_progress)
    except (BagError, OSError) as exc:
        summary = {"fatal": str(exc)}
    Path(spec["summary"]).write_text(json.dumps(summary))
    return 1 if summary.get("fatal") else 0


if __name__ == "__main__":
    sys.exit(main())
