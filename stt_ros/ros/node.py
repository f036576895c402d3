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
* Latest frame wins: subscription callbacks only park the newest message of each camera in a
  one-slot mailbox (a frame still waiting there is dropped and counted); a worker thread takes
  frames from the mailboxes round-robin and runs the model, so nothing queues without bound and
  the executor stays free for callbacks, the reset service and diagnostics.
* A plain node, not a lifecycle node: the model is loaded once at start-up and a failure ends
  the process with one message, which a launch file's respawn or a supervisor handles; a
  lifecycle node would need a manager to drive its transitions, which neither the pip
  environment (no launch, no ros2 CLI) nor the bag-evaluation tool has.
"""

from __future__ import annotations

import collections
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import NameValidationException, ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import Trigger

from stt_ros.config import ConfigError
from stt_ros.msg import TemporalConsistency
from stt_ros.ros.conversions import ImageError, compressed_to_rgb, image_to_rgb, numpy_to_image
from stt_ros.ros.params import declare_parameters, params_file_warnings, read_settings, settings_with
from stt_ros.ros.settings import NodeSettings
from stt_ros.runtime import StreamingSegmenter, create_backend
from stt_ros.runtime.camera import WINDOW, CameraPipeline, PipelineSettings
from stt_ros.viz import make_palette, palette
from stt_ros.weights import WeightsError


def stamp_seconds(header) -> float:  # noqa: ANN001
    return header.stamp.sec + header.stamp.nanosec * 1e-9


@dataclass
class CameraStream:
    """What the node keeps for one camera around its pipeline: topics, the mailbox, input counters."""

    name: str
    topic: str
    pipeline: CameraPipeline
    pubs: dict
    lock: threading.Lock = field(default_factory=threading.Lock)  # guards `pending` and the input counters
    busy: threading.Lock = field(default_factory=threading.Lock)  # held while the pipeline runs
    pending: tuple | None = None  # (msg, receive time, compressed) waiting to be processed
    received: int = 0
    last_error: str = ""
    last_error_log: float = 0.0
    last_receive: float | None = None
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
                stream = CameraStream(name, topic, pipeline, pubs)
                if s.transport(i) == "compressed":
                    self.create_subscription(CompressedImage, f"{topic}/compressed",
                                             lambda m, st=stream: self._on_image(st, m, compressed=True), in_qos)
                else:
                    self.create_subscription(Image, topic, lambda m, st=stream: self._on_image(st, m), in_qos)
            except NameValidationException as exc:  # rclpy's message spans lines (with a caret): keep the first
                raise ConfigError(f"camera {name!r} with topic {topic!r}: {str(exc).splitlines()[0].rstrip(':')}; "
                                  f"see camera_names and camera_topics") from None
            self.streams.append(stream)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(s.diagnostics_period_s, self._publish_diagnostics)
        self.create_service(Trigger, "~/reset", self._on_reset)

        self._wake = threading.Event()
        self._running = True
        self._worker = threading.Thread(target=self._work, name="stt_inference", daemon=True)
        self._worker.start()
        cams = ", ".join(f"{st.name} <- {st.topic}" for st in self.streams)
        self.get_logger().info(f"{self.config.model} ({self.config.backend}, {self.config.device}) at "
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
    def _on_image(self, stream: CameraStream, msg, compressed: bool = False) -> None:  # noqa: ANN001
        now = time.monotonic()
        with stream.lock:
            stream.received += 1
            stream.window_received += 1
            stream.last_receive = now
            if stream.pending is not None:
                stream.pipeline.count_dropped()
                stream.window_dropped += 1
            stream.pending = (msg, now, compressed)
        self._wake.set()

    def _work(self) -> None:
        while self._running:
            self._wake.wait(0.2)
            self._wake.clear()
            progressed = True
            while progressed and self._running:
                progressed = False
                for stream in self.streams:
                    with stream.lock:
                        item, stream.pending = stream.pending, None
                    if item is not None:
                        progressed = True
                        with stream.busy:
                            try:
                                self._process(stream, *item)
                            except Exception as exc:  # noqa: BLE001 (one bad frame must not stop the node)
                                self._reject(stream, f"processing failed: {type(exc).__name__}: {exc}")

    def _reject(self, stream: CameraStream, reason: str) -> None:
        stream.pipeline.reject()
        with stream.lock:
            stream.last_error = reason
        now = time.monotonic()
        if now - stream.last_error_log > 5.0:  # one line per camera every 5 s at most
            stream.last_error_log = now
            self.get_logger().warning(f"{stream.name} ({stream.topic}): frame rejected: {reason} "
                                      f"({stream.pipeline.counters.rejected} rejected so far)")

    def _log_reset(self, stream: CameraStream, reason: str) -> None:
        self.get_logger().info(f"{stream.name}: ring buffer reset ({reason}); "
                               f"{stream.pipeline.counters.resets} resets so far")

    # ------------------------------------------------------------------ processing
    def _process(self, stream: CameraStream, msg, received: float, compressed: bool) -> None:  # noqa: ANN001
        try:
            rgb = compressed_to_rgb(msg) if compressed else image_to_rgb(msg)
        except ImageError as exc:
            self._reject(stream, str(exc))
            return
        pipe, header, pubs = stream.pipeline, msg.header, stream.pubs
        stamp = stamp_seconds(header)
        frame = pipe.segment(rgb, stamp)
        if frame.reset:
            self._log_reset(stream, frame.reset)
        pubs["mask"].publish(numpy_to_image(frame.mask, "mono8", header))  # first: nothing below delays it
        if pubs["color_mask"].get_subscription_count() > 0:
            pubs["color_mask"].publish(numpy_to_image(pipe.colorize(frame), "rgb8", header))
        if pubs["overlay"].get_subscription_count() > 0:
            pubs["overlay"].publish(numpy_to_image(pipe.overlay(frame), "rgb8", header))

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
        tc_msg.end_to_end_latency_ms = max(0.0, (now_ros - stamp) * 1e3)
        tc_msg.ring_buffer_fill, tc_msg.ring_buffer_capacity = frame.buffer_fill, pipe.capacity
        c = pipe.counters
        tc_msg.frames_dropped, tc_msg.frames_rejected = c.dropped, c.rejected
        tc_msg.buffer_resets, tc_msg.frames_processed = c.resets, c.processed
        stream.end_to_end_ms.append(tc_msg.end_to_end_latency_ms)
        pubs["tc"].publish(tc_msg)

    # ------------------------------------------------------------------ services, diagnostics
    def _on_reset(self, request, response):  # noqa: ANN001, ANN201
        for stream in self.streams:
            with stream.busy:
                stream.pipeline.reset()
                stream.pipeline.forget()  # a fresh start: the next frame is compared with nothing
                self._log_reset(stream, "~/reset service")
        response.success = True
        response.message = f"reset the ring buffers of {len(self.streams)} camera(s)"
        return response

    def _status(self, stream: CameraStream, now: float) -> DiagnosticStatus:
        s = self.settings
        with stream.lock:
            received, dropped = stream.window_received, stream.window_dropped
            stream.window_received = stream.window_dropped = 0
            total_received = stream.received
            last_receive, last_error = stream.last_receive, stream.last_error
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
            worse(DiagnosticStatus.WARN, "no images" if last_receive is None else
                  f"no image for {now - last_receive:.1f} s")
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
                  "frames_processed": str(c.processed),
                  "frames_dropped": str(c.dropped), "frames_rejected": str(c.rejected), "buffer_resets": str(c.resets),
                  "ring_buffer_fill": f"{pipe.fill}/{pipe.capacity}",
                  "last_error": last_error}
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        return status

    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [self._status(st, now) for st in self.streams]
        self._diag_pub.publish(msg)

    def shutdown(self) -> None:
        self._running = False
        self._wake.set()
        self._worker.join(timeout=10)


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
