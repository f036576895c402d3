"""Bag replay evaluation: every camera frame of a bag through the node's streaming pipeline.

* Offline (:func:`run_offline`): frames in bag order through one
  :class:`stt_ros.runtime.camera.CameraPipeline` per camera (sharing one backend), the class the
  node runs: the same reset rule, masks, overlays and per-frame temporal consistency.
* Online (:func:`run_online`): ``python -m stt_ros.ros.replay`` plays the bag onto ROS topics at
  the recorded speed (times a rate factor), runs stt_node in a subprocess over DDS on loopback and
  records what the node published; here the recording is paired with the input frames by header
  stamp. Frames without a mask are the node's drops.

Both fill the same :class:`stt_ros.bag.metrics.CameraMetrics` and output bag, so their reports
compare directly. Nothing here imports ROS: the online player lives in stt_ros/ros/.
"""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stt_ros.bag.metrics import CameraMetrics
from stt_ros.bag.output import OutputBag, output_topics
from stt_ros.bag.source import COMPRESSED, IMAGE, IMAGE_TYPES, BagError, BagSource
from stt_ros.config import STTConfig
from stt_ros.metrics import TC_FLOW_PRESET, TC_FLOW_SCALE, TC_PROTOCOLS, Agreement, make_flow
from stt_ros.runtime.images import ImageError, compressed_to_rgb, image_to_rgb, mono8_to_array
from stt_ros.runtime.stream_policy import DEFAULT_MAX_GAP_S
from stt_ros.viz import colorize, overlay, palette

#: last topic components that name a camera's image rather than the camera
IMAGE_NAMES = {"image", "image_raw", "image_color", "image_rect", "image_rect_color", "image_mono", "compressed"}
#: image topics that hold labels or a previous run's outputs, never camera frames
LABEL_NAMES = ("labels", "label", "semantic", "gt")
OUTPUT_NAMES = ("mask", "color_mask", "overlay")


@dataclass
class Camera:
    """A camera topic of the bag and where its outputs and labels go."""

    name: str  # output namespace: /<name>/mask ...
    topic: str  # topic in the bag
    msgtype: str  # sensor_msgs/msg/Image or CompressedImage
    label_topic: str | None = None

    @property
    def compressed(self) -> bool:
        return self.msgtype == COMPRESSED

    @property
    def node_topic(self) -> str:
        """The node's camera_topics entry (it subscribes <topic>/compressed for compressed ones)."""
        return self.topic[: -len("/compressed")] if self.compressed and self.topic.endswith("/compressed") \
            else self.topic

    @property
    def publish_topic(self) -> str:
        return self.node_topic + "/compressed" if self.compressed else self.topic

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", self.name.strip("/")) or "camera"


@dataclass
class EvalSettings:
    flow: str = "dis"  # dis (the node's TC flow), dis:<preset> or none (no TC)
    tc_protocol: str = "stt_ros"  # or etc: the sequence TC by ETC's protocol (stt_ros.metrics)
    max_gap_s: float = DEFAULT_MAX_GAP_S
    overlay_alpha: float = 0.5
    palette: str = "cityscapes"
    samples: int = 6  # overlays kept per camera for the report
    rate: float = 1.0  # online: playback speed factor
    domain_id: int | None = None  # online: ROS_DOMAIN_ID (default: the environment's)
    progress: bool = True

    def __post_init__(self) -> None:
        if self.tc_protocol not in TC_PROTOCOLS:
            raise ValueError(f"tc protocol {self.tc_protocol!r}: choose {' or '.join(TC_PROTOCOLS)}")
        make_flow(self.flow)  # ValueError for an unknown flow

    def pipeline_settings(self):  # noqa: ANN201 (a PipelineSettings; imported here: the runtime loads torch)
        """The camera pipeline's settings for ``flow`` (as the node's tc_enabled/flow_* parameters)."""
        from stt_ros.runtime.camera import PipelineSettings

        preset, scale = (TC_FLOW_PRESET, TC_FLOW_SCALE) if self.flow in ("dis", "none") else \
            (self.flow.split(":", 1)[1], 1.0)
        return PipelineSettings(max_gap_s=self.max_gap_s, tc_enabled=self.flow != "none", flow_preset=preset,
                                flow_scale=scale, overlay_alpha=self.overlay_alpha)


def camera_name(topic: str) -> str:
    parts = [p for p in topic.strip("/").split("/") if p]
    while len(parts) > 1 and parts[-1] in IMAGE_NAMES:
        parts.pop()
    return "/".join(parts) or "camera"


def _is_label_or_output(topic: str) -> bool:
    last = topic.rstrip("/").rsplit("/", 1)[-1]
    return last in LABEL_NAMES or last in OUTPUT_NAMES


def select_cameras(source: BagSource, topics: list[str] | None = None, labels: dict[str, str] | None = None,
                   names: list[str] | None = None) -> tuple[list[Camera], list[str]]:
    """The camera topics to evaluate (given, or every image topic that is not a label or output
    topic) with their label topics, and a line per skipped topic."""
    info = source.topics
    images = {t: i for t, i in info.items() if i.msgtype in IMAGE_TYPES}
    listing = ", ".join(f"{t} ({i.msgtype})" for t, i in sorted(info.items())) or "no topics at all"
    if not images:
        raise BagError(f"{source.path} has no image topic (sensor_msgs/msg/Image or CompressedImage); it has: "
                       f"{listing}")
    labels = dict(labels or {})
    for cam, lab in labels.items():
        for t in (cam, lab):
            if t not in images:
                raise BagError(f"--labels {cam}={lab}: {t} is not an image topic of {source.path}; image topics: "
                               f"{', '.join(sorted(images))}")
    if topics:
        missing = [t for t in topics if t not in images]
        if missing:
            raise BagError(f"{', '.join(missing)} not an image topic of {source.path}; image topics: "
                           f"{', '.join(sorted(images))}")
        chosen = list(topics)
    else:
        chosen = [t for t in sorted(images) if not _is_label_or_output(t) and t not in labels.values()]
        if not chosen:
            raise BagError(f"{source.path} has image topics, but all look like labels or outputs "
                           f"({', '.join(sorted(images))}); name the camera topics with --topics")
    if names and len(names) != len(chosen):
        raise BagError(f"--camera-names gives {len(names)} names for {len(chosen)} camera topics")
    cams: list[Camera] = []
    used: set[str] = set()
    for i, t in enumerate(chosen):
        name = names[i] if names else camera_name(t)
        while name in used:
            name = f"{name}_{i}"
        used.add(name)
        lab = labels.get(t)
        if lab is None:
            ns = t.rstrip("/").rsplit("/", 1)[0] if t.count("/") > 1 else ""
            for cand in (f"{ns}/{n}" for n in LABEL_NAMES):
                if cand in images and images[cand].msgtype == IMAGE:
                    lab = cand
                    break
        cams.append(Camera(name, t, images[t].msgtype, lab))
    used_topics = {c.topic for c in cams} | {c.label_topic for c in cams if c.label_topic}
    skipped = [f"{t} ({i.msgtype}, {i.count} messages)" for t, i in sorted(info.items()) if t not in used_topics]
    return cams, skipped


def header_stamp_ns(msg) -> int:  # noqa: ANN001
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def deserialize(ts, raw: bytes, msgtype: str):  # noqa: ANN001, ANN201
    """A rosbags message from CDR bytes; ImageError (never another exception) when they are bad."""
    try:
        return ts.deserialize_cdr(raw, msgtype)
    except Exception as exc:  # noqa: BLE001 (rosbags raises struct.error, IndexError, UnicodeDecodeError ...)
        raise ImageError(f"cannot deserialize {msgtype} ({len(raw)} bytes): {type(exc).__name__}: {exc}") from None


def decode(msg, msgtype: str) -> np.ndarray:  # noqa: ANN001
    return compressed_to_rgb(msg) if msgtype == COMPRESSED else image_to_rgb(msg)


def decode_frame(ts, raw: bytes, msgtype: str) -> tuple[object, int, np.ndarray]:  # noqa: ANN001
    """(message, header stamp ns, RGB) of a camera frame's CDR bytes; ImageError when unusable."""
    msg = deserialize(ts, raw, msgtype)
    return msg, header_stamp_ns(msg), decode(msg, msgtype)


def sample_indices(count: int, n: int) -> set[int]:
    if count <= 0 or n <= 0:
        return set()
    return {int(round(x)) for x in np.linspace(min(3, count - 1), count - 1, min(n, count))}


class Run:
    """State shared by the offline and online modes: metrics, output bag, samples."""

    def __init__(self, source: BagSource, cams: list[Camera], cfg: STTConfig, settings: EvalSettings,
                 out_bag: OutputBag, class_names: list[str] | None = None) -> None:
        self.source, self.cams, self.cfg, self.settings, self.out = source, cams, cfg, settings, out_bag
        self.by_topic = {c.topic: c for c in cams}
        self.by_label = {c.label_topic: c for c in cams if c.label_topic}
        etc = settings.tc_protocol == "etc" and settings.flow != "none"
        self.metrics = {c.topic: CameraMetrics(c.name, c.topic, c.label_topic, cfg.num_classes, class_names,
                                               make_flow(settings.flow) if etc else None) for c in cams}
        self.palette = palette(settings.palette)
        self.ts = out_bag.ts
        self.counts = {c.topic: 0 for c in cams}  # camera frames seen so far
        self.wanted = {c.topic: sample_indices(source.topics[c.topic].count, settings.samples) for c in cams}
        self.samples: dict[str, list[tuple[float, np.ndarray]]] = {c.topic: [] for c in cams}
        self.first_stamp: dict[str, int] = {}
        self.error = ""  # damage of the bag, if any

    def topics(self) -> list[str]:
        return [c.topic for c in self.cams] + list(self.by_label)

    def total_frames(self) -> int:
        return sum(self.source.topics[c.topic].count for c in self.cams)

    def on_label(self, m) -> None:  # noqa: ANN001
        self.out.write_raw(m.topic, m.msgtype, m.log_time, m.raw)
        cam = self.by_label[m.topic]
        try:
            msg = deserialize(self.ts, m.raw, m.msgtype)
            self.metrics[cam.topic].add_label(header_stamp_ns(msg), mono8_to_array(msg))
        except ImageError as exc:
            self.metrics[cam.topic].label_error(f"label at {m.log_time}: {exc}")

    def keep_sample(self, cam: Camera, index: int, stamp_ns: int, image: np.ndarray) -> None:
        if index in self.wanted[cam.topic]:
            t0 = self.first_stamp.get(cam.topic, stamp_ns)
            self.samples[cam.topic].append(((stamp_ns - t0) / 1e9, np.array(image)))


def run_offline(run: Run, model=None, skip: dict[str, set[int]] | None = None) -> None:  # noqa: ANN001
    """Process every camera frame in bag order (see the module docstring); ``skip`` (topic ->
    header stamps) leaves frames out as if the node had dropped them."""
    from tqdm import tqdm

    from stt_ros.runtime import StreamingSegmenter, create_backend
    from stt_ros.runtime.camera import CameraPipeline

    backend = create_backend(run.cfg, model)
    pipes = {c.topic: CameraPipeline(StreamingSegmenter(backend, "input"), run.settings.pipeline_settings(),
                                     run.palette) for c in run.cams}
    with tqdm(total=run.total_frames(), unit="frame", desc="stt-bag-eval", disable=not run.settings.progress,
              dynamic_ncols=True) as bar:
        try:
            for m in run.source.messages(run.topics()):
                if m.topic in run.by_label:
                    run.on_label(m)
                    continue
                cam, met, pipe = run.by_topic[m.topic], run.metrics[m.topic], pipes[m.topic]
                index = run.counts[m.topic]
                run.counts[m.topic] += 1
                bar.update(1)
                run.out.write_raw(m.topic, m.msgtype, m.log_time, m.raw)
                t0 = time.perf_counter()
                try:
                    msg, stamp, rgb = decode_frame(run.ts, m.raw, m.msgtype)
                except ImageError as exc:
                    pipe.reject()
                    met.add_dropped(m.log_time, str(exc))
                    continue
                run.first_stamp.setdefault(m.topic, stamp)
                if skip and stamp in skip.get(m.topic, ()):
                    pipe.count_dropped()
                    met.add_dropped(stamp)
                    continue
                frame = pipe.process(rgb, stamp / 1e9, color=True, with_overlay=True)
                e2e = (time.perf_counter() - t0) * 1e3
                res, tc = frame.result, frame.tc
                rec = met.add_frame(stamp, rgb, frame.mask, res.timings["total_ms"], e2e, frame.reset, tc)
                topics = output_topics(cam.name)
                c = pipe.counters
                run.out.write_image(topics["mask"], frame.mask, msg.header, m.log_time)
                run.out.write_image(topics["color_mask"], frame.color, msg.header, m.log_time)
                run.out.write_image(topics["overlay"], frame.overlay, msg.header, m.log_time)
                run.out.write_tc(topics["temporal_consistency"], msg.header, m.log_time, camera_name=cam.name,
                                 tc_valid=bool(np.isfinite(rec.tc)), tc_miou=rec.tc, tc_pixel_agreement=rec.tc_pixel,
                                 tc_class_intersection=_counts(tc, "intersection"),
                                 tc_class_union=_counts(tc, "union"),
                                 inference_latency_ms=rec.inference_ms, end_to_end_latency_ms=e2e,
                                 ring_buffer_fill=frame.buffer_fill, ring_buffer_capacity=pipe.capacity,
                                 frames_dropped=c.dropped, frames_rejected=c.rejected,
                                 buffer_resets=c.resets, frames_processed=c.processed)
                run.keep_sample(cam, index, stamp, frame.overlay)
        except BagError as exc:
            run.error = str(exc)


def _counts(tc: Agreement | None, which: str) -> np.ndarray:
    return getattr(tc, which).astype(np.uint32) if tc is not None else np.zeros(0, np.uint32)


def agreement_from_message(tc_msg) -> Agreement | None:  # noqa: ANN001
    """The frame's TC as the node published it (None when it has none)."""
    if not tc_msg.tc_valid or len(tc_msg.tc_class_union) == 0:
        return None
    return Agreement(float(tc_msg.tc_miou), float(tc_msg.tc_pixel_agreement),
                     np.asarray(tc_msg.tc_class_intersection, np.int64), np.asarray(tc_msg.tc_class_union, np.int64))


# ---------------------------------------------------------------------- online
def node_parameters(cams: list[Camera], cfg: STTConfig, settings: EvalSettings) -> dict:
    """stt_node's parameters for replaying ``cams`` with model ``cfg``."""
    params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.to_dict().items()}
    if params.get("weights"):
        params["weights"] = str(Path(params["weights"]).resolve())
    pipe = settings.pipeline_settings()
    params.update(camera_names=[c.name for c in cams], camera_topics=[c.node_topic for c in cams],
                  camera_transports=["compressed" if c.compressed else "raw" for c in cams],
                  mask_resolution="camera", max_frame_gap_s=float(settings.max_gap_s),
                  overlay_alpha=float(settings.overlay_alpha), palette=settings.palette,
                  tc_enabled=pipe.tc_enabled, flow_preset=pipe.flow_preset, flow_scale=float(pipe.flow_scale))
    return params


def run_online(run: Run, workdir: Path) -> dict:
    """Replay through stt_node (subprocess) and merge its recorded outputs; returns the replay's
    summary (sent frames, node exit code, warm-up)."""
    import yaml

    workdir.mkdir(parents=True, exist_ok=True)
    params_file = workdir / "node_params.yaml"
    params_file.write_text(yaml.safe_dump({"/**": {"ros__parameters": node_parameters(
        run.cams, run.cfg, run.settings)}}))
    spec = {"bag": str(run.source.path), "recording": str(workdir / "recording"),
            "summary": str(workdir / "replay.json"), "node_log": str(workdir / "node.log"),
            "params_file": str(params_file), "rate": run.settings.rate,
            "cameras": [{"name": c.name, "topic": c.topic, "msgtype": c.msgtype, "publish_topic": c.publish_topic}
                        for c in run.cams]}
    spec_file = workdir / "replay_spec.json"
    spec_file.write_text(json.dumps(spec, indent=2))
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1")
    if run.settings.domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(run.settings.domain_id)
    cmd = [sys.executable, "-m", "stt_ros.ros.replay", str(spec_file)]
    if not run.settings.progress:
        cmd.append("--no-progress")
    proc = subprocess.run(cmd, env=env, cwd=Path.cwd())
    summary_path = workdir / "replay.json"
    if not summary_path.is_file():
        raise BagError(f"the replay through stt_node failed (exit {proc.returncode}) before writing its summary; "
                       f"see {workdir / 'node.log'}")
    summary = json.loads(summary_path.read_text())
    if summary.get("fatal"):
        raise BagError(f"replay through stt_node failed: {summary['fatal']}")
    merge_recording(run, workdir / "recording", summary)
    return summary


class RecordingCursor:
    """The node's recorded outputs, read lazily and matched to the bag's frames in order.

    Per topic the node publishes in the order it processed frames, a subsequence of the played
    order, so the head of a topic's queue either carries the frame's stamp (its output) or not (the
    frame was dropped). Only messages read ahead of the current frame are held in memory.
    """

    def __init__(self, recording: Path, ts) -> None:  # noqa: ANN001
        self.ts = ts
        self._source = BagSource(recording) if recording.exists() else None
        self._it = self._source.messages() if self._source is not None else iter(())
        self._queues: dict[str, collections.deque] = collections.defaultdict(collections.deque)

    def take(self, topic: str, stamp: int) -> tuple[str, bytes, int] | None:
        """(msgtype, raw, receive ns) of ``topic``'s output for the frame ``stamp``, or None."""
        q = self._queues[topic]
        while not q:
            m = next(self._it, None)
            if m is None:
                return None
            st = header_stamp_ns(self.ts.deserialize_cdr(m.raw, m.msgtype))
            self._queues[m.topic].append((st, m.msgtype, m.raw, m.log_time))
        if q[0][0] != stamp:
            return None
        _, msgtype, raw, receive = q.popleft()
        return msgtype, raw, receive

    def close(self) -> None:
        if self._source is not None:
            self._source.close()


def merge_recording(run: Run, recording: Path, summary: dict) -> None:
    """Pair the node's recorded outputs with the bag's frames by header stamp."""
    from tqdm import tqdm

    cursor = RecordingCursor(recording, run.ts)
    sent = {t: {int(s): int(ns) for s, ns in pairs} for t, pairs in summary.get("sent", {}).items()}
    # the node's buffer_resets counter before the first played frame (the warm-up's ~/reset)
    last_resets = {c.topic: int(summary.get("resets_before_play", {}).get(c.name, 0)) for c in run.cams}
    with tqdm(total=run.total_frames(), unit="frame", desc="merging node outputs",
              disable=not run.settings.progress, dynamic_ncols=True) as bar:
        try:
            for m in run.source.messages(run.topics()):
                if m.topic in run.by_label:
                    run.on_label(m)
                    continue
                cam, met = run.by_topic[m.topic], run.metrics[m.topic]
                index = run.counts[m.topic]
                run.counts[m.topic] += 1
                bar.update(1)
                run.out.write_raw(m.topic, m.msgtype, m.log_time, m.raw)
                try:
                    msg = deserialize(run.ts, m.raw, m.msgtype)
                    stamp = header_stamp_ns(msg)
                except ImageError as exc:
                    met.add_dropped(m.log_time, str(exc))
                    continue
                run.first_stamp.setdefault(m.topic, stamp)
                topics = output_topics(cam.name)
                got = {kind: cursor.take(topic, stamp) for kind, topic in topics.items()}
                got_mask, got_tc = got["mask"], got["temporal_consistency"]
                if got_mask is None:
                    reason = "" if stamp in sent.get(cam.publish_topic, {}) else "not played (replay ended early)"
                    met.add_dropped(stamp, reason)
                    continue
                try:
                    rgb = decode(msg, m.msgtype)
                    mask = mono8_to_array(deserialize(run.ts, got_mask[1], got_mask[0]))
                except ImageError as exc:
                    met.add_dropped(stamp, str(exc))
                    continue
                inference = float("nan")
                reset = ""
                tc = None
                if got_tc is not None:
                    tc_msg = run.ts.deserialize_cdr(got_tc[1], got_tc[0])
                    inference = float(tc_msg.inference_latency_ms)
                    tc = agreement_from_message(tc_msg)
                    if int(tc_msg.buffer_resets) > last_resets[m.topic]:
                        reset = f"node reset its ring buffer (buffer_resets {last_resets[m.topic]} -> " \
                                f"{int(tc_msg.buffer_resets)})"
                        last_resets[m.topic] = int(tc_msg.buffer_resets)
                send_ns = sent.get(cam.publish_topic, {}).get(stamp)
                e2e = (got_mask[2] - send_ns) / 1e6 if send_ns is not None else float("nan")
                met.add_frame(stamp, rgb, mask, inference, e2e, reset, tc)
                for kind, item in got.items():
                    if item is not None:
                        run.out.write_raw(topics[kind], item[0], m.log_time, item[1])
                over = got["overlay"]
                if index in run.wanted[m.topic]:
                    image = image_to_rgb(run.ts.deserialize_cdr(over[1], over[0])) if over is not None else \
                        overlay(rgb, colorize(mask, run.palette), run.settings.overlay_alpha)
                    run.keep_sample(cam, index, stamp, image)
        except BagError as exc:
            run.error = str(exc)
        finally:
            cursor.close()
