"""Bag replay evaluation: every camera frame of a bag through the node's streaming pipeline.

* Offline (:func:`run_offline`): frames in bag order through one
  :class:`stt_ros.runtime.camera.CameraPipeline` per camera (sharing one backend), the class the
  node runs: the same reset rule, masks, overlays and per-frame temporal consistency.
* Online (:func:`stt_ros.bag.online.run_online`): the bag played to stt_node over DDS and the
  node's outputs paired with the input frames by header stamp.

Which topics are cameras: :mod:`stt_ros.bag.cameras`.

Both fill the same :class:`stt_ros.bag.metrics.CameraMetrics` and output bag, so their reports
compare directly. Nothing here imports ROS: the online player lives in stt_ros/ros/.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from stt_ros.bag.cameras import Camera
from stt_ros.bag.metrics import CameraMetrics
from stt_ros.bag.output import OutputBag, output_topics
from stt_ros.bag.source import COMPRESSED, BagError, BagSource
from stt_ros.config import STTConfig
from stt_ros.metrics import TC_FLOW_PRESET, TC_FLOW_SCALE, TC_PROTOCOLS, Agreement, make_flow
from stt_ros.runtime.images import ImageError, compressed_to_rgb, image_to_rgb, mono8_to_array
from stt_ros.runtime.stream_policy import DEFAULT_MAX_GAP_S
from stt_ros.viz import palette


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
    batch_cameras: bool = False  # offline: consecutive frames of distinct cameras stepped together

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
    header stamps) leaves frames out as if the node had dropped them. With ``batch_cameras`` the
    frames are gathered until a camera repeats (or a label comes), then stepped together
    (:meth:`CameraPipeline.segment_many`) and written in bag order."""
    from tqdm import tqdm

    from stt_ros.runtime import StreamingSegmenter, create_backend
    from stt_ros.runtime.camera import CameraPipeline

    backend = create_backend(run.cfg, model)
    pipes = {c.topic: CameraPipeline(StreamingSegmenter(backend, "input"), run.settings.pipeline_settings(),
                                     run.palette) for c in run.cams}
    batch: list[tuple] = []  # (message, decoded message, stamp ns, rgb, index, t0), one per camera

    def flush() -> None:
        if not batch:
            return
        group = [pipes[m.topic] for m, *_ in batch]
        frames = CameraPipeline.segment_many(group, [(rgb, stamp / 1e9, None) for _, _, stamp, rgb, _, _ in batch])
        for (m, msg, stamp, rgb, index, t0), pipe, frame in zip(batch, group, frames, strict=True):
            pipe.colorize(frame)
            pipe.overlay(frame)
            pipe.consistency(frame)
            _emit(run, m, msg, stamp, rgb, index, t0, pipe, frame)
        batch.clear()

    with tqdm(total=run.total_frames(), unit="frame", desc="stt-bag-eval", disable=not run.settings.progress,
              dynamic_ncols=True) as bar:
        try:
            for m in run.source.messages(run.topics()):
                if m.topic in run.by_label:
                    flush()
                    run.on_label(m)
                    continue
                if any(b[0].topic == m.topic for b in batch):
                    flush()
                met, pipe = run.metrics[m.topic], pipes[m.topic]
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
                    pipe.policy.observe(stamp / 1e9)  # as the node: its own drops are no gap in the camera
                    met.add_dropped(stamp)
                    continue
                if run.settings.batch_cameras:
                    batch.append((m, msg, stamp, rgb, index, t0))
                    continue
                frame = pipe.process(rgb, stamp / 1e9, color=True, with_overlay=True)
                _emit(run, m, msg, stamp, rgb, index, t0, pipe, frame)
            flush()
        except BagError as exc:
            run.error = str(exc)


def _emit(run: Run, m, msg, stamp: int, rgb: np.ndarray, index: int, t0: float, pipe, frame) -> None:  # noqa: ANN001
    """One segmented camera frame into the metrics, the output bag and the report's samples."""
    cam, met = run.by_topic[m.topic], run.metrics[m.topic]
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


def _counts(tc: Agreement | None, which: str) -> np.ndarray:
    return getattr(tc, which).astype(np.uint32) if tc is not None else np.zeros(0, np.uint32)


def agreement_from_message(tc_msg) -> Agreement | None:  # noqa: ANN001
    """The frame's TC as the node published it (None when it has none)."""
    if not tc_msg.tc_valid or len(tc_msg.tc_class_union) == 0:
        return None
    return Agreement(float(tc_msg.tc_miou), float(tc_msg.tc_pixel_agreement),
                     np.asarray(tc_msg.tc_class_intersection, np.int64), np.asarray(tc_msg.tc_class_union, np.int64))


