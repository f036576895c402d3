"""One camera stream, without ROS: the pipeline that stt_node and stt-bag-eval both drive.

Per frame, in this order:

1. **Stream policy**: the ring buffer is reset when the image size changes, the stamp goes
   backwards or jumps forward by more than ``max_gap_s`` (:class:`StreamPolicy`).
2. **Segmentation** (:meth:`CameraPipeline.segment`): the frame through this camera's
   :class:`StreamingSegmenter` (its own ring buffer, a backend shared between cameras). The mask is
   ready here; the node publishes it before the rest.
3. **Colour mask and overlay** on demand (:meth:`CameraPipeline.colorize`, :meth:`CameraPipeline.overlay`).
4. **Temporal consistency** (:meth:`CameraPipeline.consistency`), the one definition users see live
   and in bag evaluation: the previous frame's class map *at the network input size* is warped onto
   this frame's with backward optical flow between the two network-size input images (OpenCV DIS,
   ``fast`` preset on images scaled by 0.5: :data:`stt_ros.metrics.TC_FLOW_PRESET`,
   :data:`stt_ros.metrics.TC_FLOW_SCALE`), nearest sampling, pixels whose flow leaves the image not
   compared (:func:`stt_ros.metrics.pair_agreement`, the ``stt_ros`` protocol). The network-size map
   is what the camera-size mask is upsampled from (nearest), so nothing is lost, and the cost does
   not grow with the camera: 4.6 ms of flow per frame at 512x1024, 45 ms at 1024x2048 (2 cores). No
   pair spans a ring-buffer reset. The pair is fixed when the frame is segmented (``Frame.prev``, the
   previous segmented frame of the same stream since the last reset), so a frame's TC may be computed
   while the next frame is in the model.
5. **Counters and latencies** (processed, dropped, rejected, resets; recent inference times and TC).

:meth:`CameraPipeline.process` runs 1-4 in one call. Apart, they let a caller spread one camera's
work over threads (stt_node: resizing on the camera's decoder thread, the model on the one
inference thread, the camera-size mask, outputs and TC on the camera's output thread).
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from stt_ros.metrics import TC_FLOW_PRESET, TC_FLOW_SCALE, Agreement, FlowEstimator, pair_agreement
from stt_ros.runtime.stream_policy import DEFAULT_MAX_GAP_S, StreamPolicy
from stt_ros.viz import colorize, overlay, palette

if TYPE_CHECKING:  # the segmenter's module imports the backends (torch); the pipeline only calls it
    from stt_ros.runtime.segmenter import Prepared, SegResult, StreamingSegmenter

WINDOW = 50  # recent samples kept for means (diagnostics)


@dataclass
class PipelineSettings:
    """What a camera pipeline does besides segmenting (the node's dynamic parameters map onto it)."""

    max_gap_s: float = DEFAULT_MAX_GAP_S
    tc_enabled: bool = True
    flow_preset: str = TC_FLOW_PRESET
    flow_scale: float = TC_FLOW_SCALE
    overlay_alpha: float = 0.5


@dataclass
class Counters:
    processed: int = 0
    dropped: int = 0  # frames the caller never gave to the pipeline (latest frame wins, skipped)
    rejected: int = 0  # frames that could not be used (bad input, failed processing)
    resets: int = 0
    batched: int = 0  # frames stepped together with other cameras' (segment_many with more than one)


@dataclass
class Frame:
    """One segmented frame of a camera."""

    stamp: float  # seconds (header stamp)
    rgb: np.ndarray  # the camera image
    result: SegResult
    reset: str = ""  # why the ring buffer was reset before this frame ("" if it was not)
    buffer_fill: int = 0  # past frames the temporal transformer used
    color: np.ndarray | None = None
    overlay: np.ndarray | None = None
    tc: Agreement | None = None  # vs the previous frame; None on the first frame after a reset
    #: TC's predecessor, fixed at segmentation: the previous segmented frame's network-size (image,
    #: class map), None after a reset
    prev: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    @property
    def mask(self) -> np.ndarray | None:
        """Class ids at the output size (None until :meth:`CameraPipeline.finish_mask` when deferred)."""
        return self.result.mask


class CameraPipeline:
    """Everything one camera stream needs between an RGB frame and its outputs (module docstring).

    Not thread-safe: one caller at a time (the node's inference thread holds a per-camera lock);
    :meth:`count_dropped` may be called from another thread, and so may :meth:`consistency`, which
    reads only its frame (and its flow estimator), beside the next :meth:`segment`.
    """

    def __init__(self, segmenter: StreamingSegmenter, settings: PipelineSettings | None = None,
                 lut: np.ndarray | None = None) -> None:
        self.segmenter = segmenter
        self.num_classes = segmenter.backend.config.num_classes
        self.policy = StreamPolicy()
        self.counters = Counters()
        self.inference_ms: collections.deque = collections.deque(maxlen=WINDOW)
        self.recent_tc: collections.deque = collections.deque(maxlen=WINDOW)
        self._last: tuple[np.ndarray, np.ndarray] | None = None  # last segmented network-size (image, class map)
        self._flow: FlowEstimator | None = None
        self.lut = palette("cityscapes") if lut is None else lut
        self.settings = PipelineSettings()
        self.configure(settings or PipelineSettings())

    def configure(self, settings: PipelineSettings, lut: np.ndarray | None = None) -> None:
        """Apply new settings (and palette); ValueError for an unknown flow preset or scale."""
        if self._flow is None or (settings.flow_preset, settings.flow_scale) != (self._flow.preset, self._flow.scale):
            self._flow = FlowEstimator(settings.flow_preset, settings.flow_scale)
        self.settings = settings
        self.policy.max_gap_s = settings.max_gap_s
        if lut is not None:
            self.lut = lut

    # ------------------------------------------------------------------ state
    @property
    def capacity(self) -> int:
        return self.segmenter.capacity

    @property
    def fill(self) -> int:
        return self.segmenter.fill

    def reset(self) -> None:
        """Forget the past frames (ring buffer and TC's previous frame)."""
        self.segmenter.reset()
        self._last = None
        self.counters.resets += 1

    def forget(self) -> None:
        """A fresh start: also forget the last stamp and size, so the next frame resets nothing."""
        self.policy.forget()

    def count_dropped(self) -> None:
        self.counters.dropped += 1

    def reject(self) -> None:
        self.counters.rejected += 1

    # ------------------------------------------------------------------ per frame
    def prepare(self, rgb: np.ndarray) -> Prepared:
        """The frame resized to the network input; touches no state, so a camera's own thread may run it
        while the model serves another camera."""
        return self.segmenter.prepare(rgb)

    def segment(self, rgb: np.ndarray, stamp: float, prepared: Prepared | None = None,
                upsample: bool = True) -> Frame:
        """Steps 1-2: reset if the stream policy says so, then segment ``rgb`` (RGB uint8; ``prepared``:
        its :meth:`prepare`, if done already). ``upsample=False`` leaves the camera-size mask to
        :meth:`finish_mask`."""
        reason = self.policy.check(stamp, rgb.shape[:2]) or ""
        if reason:
            self.reset()
        fill = self.segmenter.fill
        result = self.segmenter.infer(prepared if prepared is not None else self.segmenter.prepare(rgb),
                                      upsample=False)
        self.counters.processed += 1
        frame = Frame(stamp, rgb, result, reason, fill, prev=self._take_turn(result))
        if upsample:
            self.finish_mask(frame)
        return frame

    @staticmethod
    def segment_many(pipes: Sequence[CameraPipeline], frames: Sequence[tuple[np.ndarray, float, Prepared | None]],
                     upsample: bool = True) -> list[Frame]:
        """:meth:`segment` for several cameras at once (cross-camera batching): ``frames[i]`` is
        ``(rgb, stamp, prepared)`` of ``pipes[i]``'s camera. Each camera's reset rule runs on its own
        stream; the shared backend then steps all of them together. Every camera gets the frame and
        ring buffer that :meth:`segment` would give it alone."""
        if len(pipes) != len(frames):
            raise ValueError(f"segment_many got {len(frames)} frames for {len(pipes)} cameras")
        if not pipes:
            return []
        prepared = [p if p is not None else pipe.segmenter.prepare(rgb)
                    for pipe, (rgb, _, p) in zip(pipes, frames, strict=True)]
        for pipe, p in zip(pipes, prepared, strict=True):  # nothing is reset or stepped for a bad frame
            pipe.segmenter.backend.check_input(p.net_in)
        reasons = []
        for pipe, (rgb, stamp, _) in zip(pipes, frames, strict=True):
            reason = pipe.policy.check(stamp, rgb.shape[:2]) or ""
            if reason:
                pipe.reset()
            reasons.append(reason)
        fills = [pipe.segmenter.fill for pipe in pipes]
        results = pipes[0].segmenter.infer_many([pipe.segmenter for pipe in pipes], prepared, upsample=False)
        out = []
        for pipe, (rgb, stamp, _), result, reason, fill in zip(pipes, frames, results, reasons, fills, strict=True):
            pipe.counters.processed += 1
            pipe.counters.batched += len(pipes) > 1
            frame = Frame(stamp, rgb, result, reason, fill, prev=pipe._take_turn(result))
            if upsample:
                pipe.finish_mask(frame)
            out.append(frame)
        return out

    def _take_turn(self, result: SegResult) -> tuple[np.ndarray, np.ndarray] | None:
        """The just segmented frame becomes the last one; returns the one before it (TC's pair)."""
        prev = self._last
        self._last = (result.net_image, result.class_map_net) if result.net_image is not None else None
        return prev

    def finish_mask(self, frame: Frame) -> np.ndarray:
        """The mask at the output size (the deferred step 2 of :meth:`segment`)."""
        if frame.result.mask is None:
            self.segmenter.upsample(frame.result)
            self.inference_ms.append(frame.result.timings["total_ms"])
        return frame.result.mask

    def colorize(self, frame: Frame) -> np.ndarray:
        if frame.color is None:
            frame.color = colorize(self.finish_mask(frame), self.lut)
        return frame.color

    def overlay(self, frame: Frame) -> np.ndarray:
        """The colour mask over the camera image (or over the network input at mask_resolution network)."""
        if frame.overlay is None:
            base = frame.rgb if self.finish_mask(frame).shape == frame.rgb.shape[:2] else frame.result.net_image
            frame.overlay = overlay(base, self.colorize(frame), self.settings.overlay_alpha)
        return frame.overlay

    def consistency(self, frame: Frame) -> Agreement | None:
        """Step 4: TC of ``frame`` against the frame segmented before it (``frame.prev``), None after a
        reset or with TC disabled. It reads only the frame, so it may run beside the next :meth:`segment`."""
        net_image, class_map = frame.result.net_image, frame.result.class_map_net
        tc = None
        flow = self._flow  # configure() may replace it meanwhile
        if self.settings.tc_enabled and frame.prev is not None and net_image is not None:
            prev_image, prev_map = frame.prev
            tc = pair_agreement(prev_map, class_map, flow.backward(prev_image, net_image), self.num_classes)
            if np.isfinite(tc.miou):
                self.recent_tc.append(tc.miou)
        frame.tc = tc
        return tc

    def process(self, rgb: np.ndarray, stamp: float, color: bool = False, with_overlay: bool = False) -> Frame:
        """Steps 1-4 for one frame; the colour mask and overlay only when asked for."""
        frame = self.segment(rgb, stamp)
        if color or with_overlay:
            self.colorize(frame)
        if with_overlay:
            self.overlay(frame)
        self.consistency(frame)
        return frame

