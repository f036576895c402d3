"""stt_node: multi-camera STT segmentation with masks, colour overlays and temporal-consistency
diagnostics.

Run on a ROS 2 install with ``ros2 launch stt_ros stt.launch.py`` (or ``ros2 run stt_ros
stt_node``); in the pip environment::

    ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_DOMAIN_ID=42 \\
        python -m stt_ros.ros.node --ros-args --params-file config/stt.yaml

Design:

* ROS input/output around :class:`stt_ros.runtime.camera.CameraPipeline`, the per-camera pipeline
  (reset policy, segmentation, colour/overlay, temporal consistency, counters) that stt-bag-eval
  drives offline too, so a bag's report and the live node agree. One shared model (backend); one
  pipeline, with its own ring buffer, per camera.
* Latest frame wins: subscription callbacks only park the newest serialized message of each camera
  in a one-slot mailbox (a frame still waiting there is dropped and counted; its stamp still counts
  for the reset rule, so the node's own drops never look like a gap in the camera). Each camera has
  a decoder thread that deserializes, decodes and resizes its frame to the network input (bad CDR,
  an unsupported encoding or an image above ``max_input_pixels`` is rejected there, counted and
  reported in /diagnostics), one frame ahead of the model; one inference thread takes prepared
  frames round-robin and runs the shared model (``batch_cameras``: all frames waiting at that
  moment in one backend step, :meth:`Backend.infer_many`; it never waits for a late camera);
  each camera's output thread brings the mask back
  to the camera size and publishes it first, then the colour mask and overlay (when subscribed),
  the temporal consistency and its report (TC runs while the model takes the camera's next frame:
  its frame pair was fixed at segmentation). So a camera sending huge frames costs its own threads'
  time, not the model's, nothing queues without bound, and the executor stays free for callbacks,
  the reset service and diagnostics (which run on a steady timer, so they go on without /clock).
* Python ``logging`` of the library (``stt_ros.*``: backends, engine builds) is forwarded to the
  node's ROS logger, so it reaches the console, the ROS log and /rosout.
* A plain node, not a lifecycle node: the model is loaded once at start-up and a failure ends
  the process with one message, which a launch file's respawn or a supervisor handles; a
  lifecycle node would need a manager to drive its transitions, which neither the pip
  environment (no launch, no ros2 CLI) nor the bag-evaluation tool has.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import os
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.exceptions import NameValidationException, ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import Trigger

from stt_ros.config import ConfigError
from stt_ros.msg import TemporalConsistency
from stt_ros.ros.conversions import (
    ImageError,
    compressed_size,
    compressed_to_rgb,
    image_from_cdr,
    image_to_rgb,
    numpy_to_image,
)
from stt_ros.ros.params import declare_parameters, params_file_warnings, read_settings, settings_with
from stt_ros.ros.settings import NodeSettings, running_summary
from stt_ros.runtime import StreamingSegmenter, create_backend
from stt_ros.runtime.camera import WINDOW, CameraPipeline, Counters, PipelineSettings
from stt_ros.viz import make_palette, palette
from stt_ros.weights import WeightsError

ERROR_SHOWN_S = 60.0  # /diagnostics shows a camera's last error (with its age) for this long
NO_DATA_HINT = ("large images over UDP are lost at best_effort without the sender's large-image profile "
                "(config/fastdds_large_images.xml, shared memory) or bigger socket buffers "
                "(sysctl net.core.rmem_max); or set input_reliability: reliable if the sender publishes reliable")


def stamp_seconds(header) -> float:  # noqa: ANN001
    return header.stamp.sec + header.stamp.nanosec * 1e-9


def cdr_stamp(raw: bytes) -> float | None:
    """Header stamp (s) of a serialized sensor_msgs/Image or CompressedImage: the first field after the
    4-byte CDR encapsulation is the header's builtin_interfaces/Time (int32 sec, uint32 nanosec)."""
    if len(raw) < 12 or raw[0] != 0 or raw[1] not in (0, 1):
        return None
    sec, nsec = struct.unpack("<iI" if raw[1] == 1 else ">iI", raw[4:12])
    return sec + nsec * 1e-9


class RosLogHandler(logging.Handler):
    """Forwards Python ``logging`` records to a ROS logger (console, ROS log file, /rosout)."""

    def __init__(self, ros_logger) -> None:  # noqa: ANN001
        super().__init__()
        self.ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = f"[{record.name}] {record.getMessage()}"
            if record.levelno >= logging.ERROR:
                self.ros_logger.error(text)
            elif record.levelno >= logging.WARNING:
                self.ros_logger.warning(text)
            elif record.levelno >= logging.INFO:
                self.ros_logger.info(text)
            else:
                self.ros_logger.debug(text)
        except Exception:  # noqa: BLE001 (logging must never raise into the caller)
            self.handleError(record)


@dataclass
class CameraStream:
    """What the node keeps for one camera around its pipeline: topics, the mailbox, input counters."""

    name: str
    topic: str
    pipeline: CameraPipeline
    pubs: dict
    compressed: bool = False
    msg_type: type = Image
    subscription: object = None
    cond: threading.Condition = field(default_factory=threading.Condition)  # guards the mailboxes, counters
    busy: threading.Lock = field(default_factory=threading.Lock)  # held while the pipeline runs
    pending: tuple | None = None  # (serialized message, receive time) waiting for the decoder
    ready: tuple | None = None  # (rgb, prepared, header, receive time) decoded, waiting for the model
    outbox: tuple | None = None  # (frame, header) segmented, waiting for the output thread
    dropped_stamps: collections.deque = field(default_factory=lambda: collections.deque(maxlen=256))
    decoder: threading.Thread | None = None
    output: threading.Thread | None = None
    received: int = 0
    last_error: str = ""
    last_error_time: float = 0.0
    last_error_log: float = 0.0
    last_receive: float | None = None
    matched_since: float | None = None  # when a publisher was first seen matched while nothing arrived
    qos_problem: str = ""
    end_to_end_ms: collections.deque = field(default_factory=lambda: collections.deque(maxlen=WINDOW))
    window_received: int = 0  # since the last diagnostics period
    window_dropped: int = 0


def pipeline_settings(s: NodeSettings) -> PipelineSettings:
    return PipelineSettings(max_gap_s=s.max_frame_gap_s, tc_enabled=s.tc_enabled, flow_preset=s.flow_preset,
                            flow_scale=s.flow_scale, overlay_alpha=s.overlay_alpha)


class STTNode(Node):
    """See the module docstring."""

    def __init__(self, **kwargs) -> None:  # noqa: ANN003 (rclpy Node options)
        super().__init__("stt_node", **kwargs)
        self._log_handler = RosLogHandler(self.get_logger())  # first: model loading logs too
        logging.getLogger("stt_ros").addHandler(self._log_handler)
        logging.getLogger("stt_ros").setLevel(logging.INFO)
        declare_parameters(self)
        params_file_warnings(self)  # a --params-file whose keys do not match this node's name
        self.settings, self.config = read_settings(self)  # ConfigError on invalid values
        try:
            self.backend = create_backend(self.config)  # ConfigError / WeightsError end start-up
        except WeightsError as exc:
            if "different model" not in str(exc) or self.settings.model_config:
                raise
            raise WeightsError(f"{exc} (set these parameters, or model_config to the YAML written beside the "
                               f"checkpoint, e.g. models/stt_bise18_synthdrive.yaml)") from None
        lut = self._make_palette(self.settings)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        s = self.settings
        in_qos = QoSProfile(depth=s.input_depth, history=HistoryPolicy.KEEP_LAST,
                            reliability=ReliabilityPolicy.BEST_EFFORT if s.input_reliability == "best_effort"
                            else ReliabilityPolicy.RELIABLE)
        out_qos = QoSProfile(depth=2, history=HistoryPolicy.KEEP_LAST,
                             reliability=ReliabilityPolicy.RELIABLE if s.output_reliability == "reliable"
                             else ReliabilityPolicy.BEST_EFFORT)
        output_size = "input" if s.mask_resolution == "camera" else "network"
        self.streams: list[CameraStream] = []
        for i, (name, topic) in enumerate(zip(s.camera_names, s.camera_topics, strict=True)):
            try:
                pubs = {"mask": self.create_publisher(Image, f"{name}/mask", out_qos),
                        "color_mask": self.create_publisher(Image, f"{name}/color_mask", out_qos),
                        "overlay": self.create_publisher(Image, f"{name}/overlay", out_qos),
                        "tc": self.create_publisher(TemporalConsistency, f"{name}/temporal_consistency", out_qos)}
                pipeline = CameraPipeline(StreamingSegmenter(self.backend, output_size), pipeline_settings(s), lut)
                compressed = s.transport(i) == "compressed"
                stream = CameraStream(name, topic, pipeline, pubs, compressed,
                                      CompressedImage if compressed else Image)
                events = SubscriptionEventCallbacks(incompatible_qos=lambda e, st=stream: self._on_bad_qos(st, e))
                # raw: the callback only parks the bytes; the camera's decoder thread deserializes them
                stream.subscription = self.create_subscription(
                    stream.msg_type, f"{topic}/compressed" if compressed else topic,
                    lambda m, st=stream: self._on_image(st, m), in_qos, raw=True, event_callbacks=events)
            except NameValidationException as exc:  # rclpy's message spans lines (with a caret): keep the first
                raise ConfigError(f"camera {name!r} with topic {topic!r}: {str(exc).splitlines()[0].rstrip(':')}; "
                                  f"see camera_names and camera_topics") from None
            self.streams.append(stream)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # a steady clock: with use_sim_time and no /clock a ROS-time timer would never fire
        self.create_timer(s.diagnostics_period_s, self._publish_diagnostics,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.create_service(Trigger, "~/reset", self._on_reset)

        self._wake = threading.Event()
        self._running = True
        self._worker = threading.Thread(target=self._work, name="stt_inference", daemon=True)
        self._worker.start()
        for stream in self.streams:
            stream.decoder = threading.Thread(target=self._decode_loop, args=(stream,),
                                              name=f"stt_decode_{stream.name}", daemon=True)
            stream.output = threading.Thread(target=self._output_loop, args=(stream,),
                                             name=f"stt_output_{stream.name}", daemon=True)
            stream.decoder.start()
            stream.output.start()
        cams = ", ".join(f"{st.name} <- {st.topic}" for st in self.streams)
        self.get_logger().info(f"{self.config.model} ({running_summary(self.config, self.backend)}) at "
                               f"{self.config.input_height}x{self.config.input_width}, T={self.config.key_frames}, "
                               f"weights: {self.config.weights or 'random (no weights parameter)'}; cameras: {cams}")

    # ------------------------------------------------------------------ parameters
    @staticmethod
    def _make_palette(s: NodeSettings) -> np.ndarray:
        return make_palette(np.reshape(s.palette_colors, (-1, 3))) if s.palette == "custom" else palette(s.palette)

    def _on_set_parameters(self, params: list) -> SetParametersResult:
        try:
            new = settings_with(self.settings, params)
            new.validate()
            lut, pipe = self._make_palette(new), pipeline_settings(new)
        except (ConfigError, ValueError, TypeError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        for stream in self.streams:
            with stream.busy:
                stream.pipeline.configure(pipe, lut)
        self.settings = new
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ input
    def _on_image(self, stream: CameraStream, raw: bytes) -> None:
        now = time.monotonic()
        with stream.cond:
            stream.received += 1
            stream.window_received += 1
            stream.last_receive = now
            if stream.pending is not None:  # latest frame wins; its stamp still tells the reset rule
                stream.pipeline.count_dropped()
                stream.window_dropped += 1
                stamp = cdr_stamp(stream.pending[0])
                if stamp is not None:
                    stream.dropped_stamps.append(stamp)
            stream.pending = (raw, now)
            stream.cond.notify_all()

    def _on_bad_qos(self, stream: CameraStream, event) -> None:  # noqa: ANN001
        policy = getattr(getattr(event, "last_policy_kind", None), "name", "a policy")
        stream.qos_problem = (f"a publisher's QoS is incompatible ({policy}): input_reliability is "
                              f"{self.settings.input_reliability}; a best_effort sender needs best_effort")

    def _decode_loop(self, stream: CameraStream) -> None:
        """The camera's decoder: one frame ahead of the model (it waits while a decoded frame is unused)."""
        while self._running:
            with stream.cond:
                stream.cond.wait_for(lambda: not self._running or (stream.pending is not None
                                                                    and stream.ready is None), timeout=0.5)
                if not self._running or stream.pending is None or stream.ready is not None:
                    continue
                (raw, received), stream.pending = stream.pending, None
            try:
                rgb, header = self._decode(stream, raw)
                prepared = stream.pipeline.prepare(rgb)
            except ImageError as exc:
                self._reject(stream, str(exc))
                continue
            except Exception as exc:  # noqa: BLE001 (one bad frame must not stop the camera)
                self._reject(stream, f"decoding failed: {type(exc).__name__}: {exc}")
                continue
            with stream.cond:
                stream.ready = (rgb, prepared, header, received)
            self._wake.set()

    def _decode(self, stream: CameraStream, raw: bytes) -> tuple[np.ndarray, object]:
        # the fields read in place, the pixels a view of raw (deserialize_message copies them twice)
        msg = image_from_cdr(raw, stream.compressed)
        if msg is None:  # not what image_from_cdr reads exactly as rclpy does: rclpy decides
            try:
                msg = deserialize_message(raw, stream.msg_type)
            except Exception as exc:  # noqa: BLE001 (rclpy raises plain exceptions for malformed CDR)
                raise ImageError(f"malformed message ({len(raw)} bytes of CDR that do not deserialize as "
                                 f"{stream.msg_type.__name__}: {exc})") from None
        limit = self.settings.max_input_pixels
        if stream.compressed:  # from the file's header (empty data: the decoder says so below)
            _, w, h = compressed_size(msg.data) if len(msg.data) else ("", 0, 0)
        else:
            w, h = int(msg.width), int(msg.height)
        if w * h > limit:
            raise ImageError(f"image {w}x{h} ({w * h} pixels) exceeds the pixel limit max_input_pixels={limit}")
        return (compressed_to_rgb(msg) if stream.compressed else image_to_rgb(msg)), msg.header

    def _work(self) -> None:
        """The inference thread: each camera's decoded frame through the shared model, one camera after
        the other, or (batch_cameras) all frames waiting at that moment in one step of the backend."""
        while self._running:
            self._wake.wait(0.2)
            self._wake.clear()
            progressed = True
            while progressed and self._running:
                progressed = False
                batch = self.settings.batch_cameras
                taken = []
                for stream in self.streams:
                    with stream.cond:
                        if stream.outbox is not None:  # its previous frame is still being published
                            continue
                        item, stream.ready = stream.ready, None
                        if item is not None:
                            stream.cond.notify_all()  # the decoder may start on the next frame
                    if item is not None:
                        progressed = True
                        if batch:
                            taken.append((stream, item))
                        else:
                            self._run_one(stream, item)
                if len(taken) == 1:
                    self._run_one(*taken[0])
                elif taken:
                    self._run_batch(taken)

    def _run_one(self, stream: CameraStream, item: tuple) -> None:
        with stream.busy:
            try:
                frame = self._segment(stream, *item)
            except Exception as exc:  # noqa: BLE001 (one bad frame must not stop the node)
                self._reject(stream, f"processing failed: {type(exc).__name__}: {exc}")
                return
        self._hand_to_output(stream, frame, item[2])

    def _run_batch(self, taken: list[tuple[CameraStream, tuple]]) -> None:
        """Several cameras' frames in one backend step. A frame the backend would refuse is rejected on
        its own camera first, so it never holds back or touches the others."""
        good = []
        for stream, item in taken:
            try:
                self.backend.check_input(item[1].net_in)
            except ValueError as exc:
                self._reject(stream, f"processing failed: {exc}")
                continue
            good.append((stream, item))
        if len(good) <= 1:
            for stream, item in good:
                self._run_one(stream, item)
            return
        with contextlib.ExitStack() as locks:
            for stream, _ in good:
                locks.enter_context(stream.busy)
            stamps = []
            for stream, (_, _, header, _) in good:
                stamps.append(stamp_seconds(header))
                self._observe_dropped(stream, stamps[-1])
            try:
                frames = CameraPipeline.segment_many(
                    [stream.pipeline for stream, _ in good],
                    [(rgb, stamp, prepared) for (_, (rgb, prepared, _, _)), stamp in zip(good, stamps, strict=True)],
                    upsample=False)
            except Exception as exc:  # noqa: BLE001 (the backend failed for the whole batch: report it on each)
                for stream, _ in good:
                    self._reject(stream, f"processing failed (batch of {len(good)} cameras): "
                                         f"{type(exc).__name__}: {exc}")
                return
        for (stream, item), frame in zip(good, frames, strict=True):
            if frame.reset:
                self._log_reset(stream, frame.reset)
            self._hand_to_output(stream, frame, item[2])

    def _hand_to_output(self, stream: CameraStream, frame, header) -> None:  # noqa: ANN001
        with stream.cond:
            stream.outbox = (frame, header)
            stream.cond.notify_all()

    def _output_loop(self, stream: CameraStream) -> None:
        """The camera's outputs, one frame at a time and in order, beside the model's next frames: the
        mask (and colour/overlay) first; the outbox is then free for the camera's next frame, so the
        model does not wait for this frame's TC (its pair was fixed when it was segmented)."""
        while self._running:
            with stream.cond:
                stream.cond.wait_for(lambda: not self._running or stream.outbox is not None, timeout=0.5)
                if stream.outbox is None:
                    continue
                frame, header = stream.outbox
            counters = None
            try:
                with stream.busy:
                    counters = self._publish_masks(stream, frame, header)
            except Exception as exc:  # noqa: BLE001 (the frame was counted as processed: report, don't count)
                self._reject(stream, f"publishing failed: {type(exc).__name__}: {exc}", count=False)
            with stream.cond:
                stream.outbox = None
            self._wake.set()
            if counters is None:
                continue
            try:
                self._publish_tc(stream, frame, header, counters)
            except Exception as exc:  # noqa: BLE001
                self._reject(stream, f"publishing failed: {type(exc).__name__}: {exc}", count=False)

    def _reject(self, stream: CameraStream, reason: str, count: bool = True) -> None:
        now = time.monotonic()
        with stream.cond:
            if count:
                stream.pipeline.reject()
            stream.last_error, stream.last_error_time = reason, now
        if now - stream.last_error_log > 5.0:  # one line per camera every 5 s at most
            stream.last_error_log = now
            self.get_logger().warning(f"{stream.name} ({stream.topic}): frame rejected: {reason} "
                                      f"({stream.pipeline.counters.rejected} rejected so far)")

    def _log_reset(self, stream: CameraStream, reason: str) -> None:
        self.get_logger().info(f"{stream.name}: ring buffer reset ({reason}); "
                               f"{stream.pipeline.counters.resets} resets so far")

    # ------------------------------------------------------------------ processing
    def _segment(self, stream: CameraStream, rgb: np.ndarray, prepared, header, received: float):  # noqa: ANN001, ANN202
        """The inference thread's part: the reset rule and the model (the mask stays at network size)."""
        pipe = stream.pipeline
        stamp = stamp_seconds(header)
        self._observe_dropped(stream, stamp)
        frame = pipe.segment(rgb, stamp, prepared, upsample=False)
        if frame.reset:
            self._log_reset(stream, frame.reset)
        return frame

    @staticmethod
    def _observe_dropped(stream: CameraStream, stamp: float) -> None:
        """Frames the node dropped before the one stamped ``stamp``: the camera had no gap there."""
        with stream.cond:
            older = [t for t in stream.dropped_stamps if t < stamp]
            if older:
                stream.dropped_stamps = collections.deque((t for t in stream.dropped_stamps if t >= stamp),
                                                          maxlen=stream.dropped_stamps.maxlen)
        if older:
            stream.pipeline.policy.observe(max(older))

    def _publish_masks(self, stream: CameraStream, frame, header) -> Counters:  # noqa: ANN001
        """The output thread's first part: the mask, then colour/overlay on demand. Returns the camera's
        counters as they stand with this frame (its TC report carries them)."""
        pipe, pubs = stream.pipeline, stream.pubs
        pubs["mask"].publish(numpy_to_image(pipe.finish_mask(frame), "mono8", header))
        if pubs["color_mask"].get_subscription_count() > 0:
            pubs["color_mask"].publish(numpy_to_image(pipe.colorize(frame), "rgb8", header))
        if pubs["overlay"].get_subscription_count() > 0:
            pubs["overlay"].publish(numpy_to_image(pipe.overlay(frame), "rgb8", header))
        with stream.cond:
            return dataclasses.replace(pipe.counters)

    def _publish_tc(self, stream: CameraStream, frame, header, c: Counters) -> None:  # noqa: ANN001
        """The output thread's second part, while the model may run the camera's next frame: TC and its report."""
        pipe = stream.pipeline
        tc = pipe.consistency(frame)
        tc_msg = TemporalConsistency(header=header, camera_name=stream.name, tc_valid=False,
                                     tc_miou=float("nan"), tc_pixel_agreement=float("nan"))
        if tc is not None:
            tc_msg.tc_valid = bool(np.isfinite(tc.miou))
            tc_msg.tc_miou, tc_msg.tc_pixel_agreement = tc.miou, tc.pixel_agreement
            tc_msg.tc_class_intersection = tc.intersection.astype(np.uint32).tolist()
            tc_msg.tc_class_union = tc.union.astype(np.uint32).tolist()
        now_ros = self.get_clock().now().nanoseconds * 1e-9
        tc_msg.inference_latency_ms = frame.result.timings["total_ms"]
        tc_msg.end_to_end_latency_ms = max(0.0, (now_ros - frame.stamp) * 1e3)
        tc_msg.ring_buffer_fill, tc_msg.ring_buffer_capacity = frame.buffer_fill, pipe.capacity
        tc_msg.frames_dropped, tc_msg.frames_rejected = c.dropped, c.rejected
        tc_msg.buffer_resets, tc_msg.frames_processed = c.resets, c.processed
        stream.end_to_end_ms.append(tc_msg.end_to_end_latency_ms)
        stream.pubs["tc"].publish(tc_msg)

    # ------------------------------------------------------------------ services, diagnostics
    def _on_reset(self, request, response):  # noqa: ANN001, ANN201
        for stream in self.streams:
            with stream.busy:
                stream.pipeline.reset()
                stream.pipeline.forget()  # a fresh start: the next frame is compared with nothing
                with stream.cond:
                    stream.dropped_stamps.clear()
                self._log_reset(stream, "~/reset service")
        response.success = True
        response.message = f"reset the ring buffers of {len(self.streams)} camera(s)"
        return response

    def _status(self, stream: CameraStream, now: float) -> DiagnosticStatus:
        s = self.settings
        with stream.cond:
            received, dropped = stream.window_received, stream.window_dropped
            stream.window_received = stream.window_dropped = 0
            total_received = stream.received
            last_receive, last_error, error_time = stream.last_receive, stream.last_error, stream.last_error_time
        pipe = stream.pipeline
        c = pipe.counters
        period = s.diagnostics_period_s
        lat = float(np.mean(pipe.inference_ms)) if pipe.inference_ms else float("nan")
        e2e = float(np.mean(stream.end_to_end_ms)) if stream.end_to_end_ms else float("nan")
        tc = float(np.mean(pipe.recent_tc)) if pipe.recent_tc else float("nan")
        drop_rate = dropped / received if received else 0.0
        level, problems = DiagnosticStatus.OK, []

        def worse(lvl: bytes, text: str) -> None:
            nonlocal level
            level = max(level, lvl)
            problems.append(text)

        if last_receive is None or now - last_receive > s.input_timeout_s:
            publishers = stream.subscription.get_publisher_count()
            if publishers and stream.matched_since is None:
                stream.matched_since = now
            elif not publishers:
                stream.matched_since = None
            quiet = now - (last_receive if last_receive is not None else stream.matched_since or now)
            if publishers and stream.matched_since is not None and now - stream.matched_since >= s.input_timeout_s:
                worse(DiagnosticStatus.WARN, f"{publishers} publisher(s) matched on "
                      f"{stream.subscription.topic_name} but no image arrived for {quiet:.1f} s: {NO_DATA_HINT}")
            else:
                worse(DiagnosticStatus.WARN, "no images" if last_receive is None else
                      f"no image for {now - last_receive:.1f} s")
        else:
            stream.matched_since = None
        if stream.qos_problem:
            worse(DiagnosticStatus.WARN, stream.qos_problem)
        if self._sim_time_without_clock():
            worse(DiagnosticStatus.WARN, "use_sim_time is true but no /clock message has arrived (ROS time is 0): "
                  "end-to-end latency is meaningless until a clock is published (ros2 bag play --clock)")
        if lat > s.latency_error_ms:
            worse(DiagnosticStatus.ERROR, f"inference {lat:.0f} ms > {s.latency_error_ms:.0f}")
        elif lat > s.latency_warn_ms:
            worse(DiagnosticStatus.WARN, f"inference {lat:.0f} ms > {s.latency_warn_ms:.0f}")
        if tc < s.tc_error:
            worse(DiagnosticStatus.ERROR, f"temporal consistency {tc:.2f} < {s.tc_error}")
        elif tc < s.tc_warn:
            worse(DiagnosticStatus.WARN, f"temporal consistency {tc:.2f} < {s.tc_warn}")
        if received and drop_rate > s.drop_warn:
            worse(DiagnosticStatus.WARN, f"dropping {100 * drop_rate:.0f}% of frames")
        status = DiagnosticStatus(level=level, name=f"{self.get_name()}: {stream.name}", hardware_id=stream.name,
                                  message="; ".join(problems) or "OK")
        values = {"topic": stream.topic, "input_rate_hz": f"{received / period:.2f}",
                  "inference_latency_ms": f"{lat:.1f}", "end_to_end_latency_ms": f"{e2e:.1f}",
                  "temporal_consistency_miou": f"{tc:.3f}", "frames_received": str(total_received),
                  "frames_processed": str(c.processed), "frames_batched": str(c.batched),
                  "frames_dropped": str(c.dropped), "frames_rejected": str(c.rejected), "buffer_resets": str(c.resets),
                  "ring_buffer_fill": f"{pipe.fill}/{pipe.capacity}",
                  "last_error": last_error if last_error and now - error_time <= ERROR_SHOWN_S else "",
                  "last_error_age_s": f"{now - error_time:.1f}" if last_error and now - error_time <= ERROR_SHOWN_S
                  else ""}
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        return status

    def _sim_time_without_clock(self) -> bool:
        return bool(self.get_parameter("use_sim_time").value) and self.get_clock().now().nanoseconds == 0

    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [self._status(st, now) for st in self.streams]
        self._diag_pub.publish(msg)

    def shutdown(self) -> None:
        self._running = False
        self._wake.set()
        for stream in self.streams:
            with stream.cond:
                stream.cond.notify_all()
        self._worker.join(timeout=10)
        for stream in self.streams:
            for thread in (stream.decoder, stream.output):
                if thread is not None:
                    thread.join(timeout=5)
        logging.getLogger("stt_ros").removeHandler(self._log_handler)


SHM_SEGMENT_BYTES = 64 * 1024 * 1024


def fastdds_profile() -> Path | None:
    """config/fastdds_large_images.xml, installed (share/stt_ros/config) or in this checkout."""
    candidates = [Path(__file__).resolve().parents[2] / "config"]
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.insert(0, Path(get_package_share_directory("stt_ros")) / "config")
    except (ImportError, LookupError, OSError):  # no ament index (pip environment) or not installed
        pass
    for folder in candidates:
        if (folder / "fastdds_large_images.xml").is_file():
            return folder / "fastdds_large_images.xml"
    return None


def configure_middleware() -> list[str]:
    """Environment for this process's DDS participant, set before rclpy.init; returns log lines.

    * ROS_AUTOMATIC_DISCOVERY_RANGE defaults to LOCALHOST (only this host) when unset, and says so:
      a node that discovers (and sends images to) every participant on the network by surprise is
      worse than one that must be told SUBNET. A value the user exported is kept as it is.
    * Fast DDS gets the large-image shared-memory profile when FASTDDS_DEFAULT_PROFILES_FILE is
      unset, STT_FASTDDS_PROFILE is not "none", and /dev/shm has room for its segment.
    """
    notes = []
    if "ROS_AUTOMATIC_DISCOVERY_RANGE" not in os.environ:
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        notes.append("ROS_AUTOMATIC_DISCOVERY_RANGE unset: using LOCALHOST (this host only; export SUBNET, or "
                     "pass discovery_range:=SUBNET to the launch file, to reach cameras on other machines)")
    if "FASTDDS_DEFAULT_PROFILES_FILE" in os.environ or os.environ.get("STT_FASTDDS_PROFILE") == "none":
        return notes
    profile = fastdds_profile()
    try:
        st = os.statvfs("/dev/shm")
        room = st.f_bavail * st.f_frsize
    except OSError:
        room = 0
    if profile is None:
        notes.append("fastdds_large_images.xml not found: Fast DDS defaults (slower for large images)")
    elif room < 2 * SHM_SEGMENT_BYTES:
        notes.append(f"/dev/shm has {room >> 20} MB free: not enabling the 64 MB shared-memory segment")
    else:
        os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
        notes.append(f"Fast DDS profile {profile} (64 MB shared-memory segment for large images)")
    return notes


def main(argv: list[str] | None = None) -> int:
    """Entry point of stt_node (python -m stt_ros.ros.node --ros-args ...).

    Exit status 0 after SIGINT/SIGTERM or an external shutdown, 1 when start-up is refused. Once
    shutdown has begun, further SIGINT/SIGTERM are ignored (a terminal's Ctrl-C and `ros2 launch`
    both signal the node, and a user may press Ctrl-C twice), so cleanup finishes without a
    KeyboardInterrupt traceback and `ros2 launch` sees a clean exit."""
    import signal

    notes = configure_middleware()
    rclpy.init(args=argv if argv is not None else sys.argv)
    for note in notes:
        rclpy.logging.get_logger("stt_node").info(note)
    node = None
    try:
        try:
            node = STTNode()
        except (ConfigError, WeightsError, ParameterException) as exc:  # parameter: wrong type or out of range
            rclpy.logging.get_logger("stt_node").fatal(f"cannot start: {exc}")
            return 1
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RuntimeError:
        # rclpy's signal handler shuts the context down asynchronously: a SIGINT/SIGTERM landing between
        # the executor's check of the context and its next wait set raises RCLError ("failed to initialize
        # wait set: the given context is not valid", ros2/rclpy#398, still seen in ros-visualization/rqt#357)
        # instead of ExternalShutdownException. That is the same clean shutdown; anything else is not.
        if rclpy.ok():
            raise
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        if node is not None:
            node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
