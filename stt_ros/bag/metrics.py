"""Per-camera metrics of a replayed bag: TC over time, latency, drops, resets and mIoU.

One :class:`CameraMetrics` per camera is fed every input frame in bag order, either with the
mask computed for it (offline: the StreamingSegmenter here; online: the mask stt_node published)
or as dropped, plus the label images of the bag's label topic. TC and mIoU are computed exactly as
``stt-eval`` computes them (:mod:`stt_train.evaluate`), so a SynthDrive bag and the same sequence
in the Cityscapes layout give the same numbers:

* TC (ETC): the previous processed frame's mask is warped onto the current one with backward
  optical flow between the two camera images (OpenCV DIS, ``fast`` preset at camera resolution by
  default, like ``stt-eval --flow dis``); intersections and unions are summed over all pairs, then
  averaged over classes. The per-pair mIoU is kept as the TC-over-time curve. No pair spans a
  ring-buffer reset (the node does the same).
* mIoU: one confusion matrix over every frame whose label (same header stamp) is in the bag.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np

from stt_ros.metrics import ConfusionMatrix, FlowEstimator, TCAccumulator, pair_agreement, percent_by_class

PENDING = 64  # predictions / labels waiting for their partner (same stamp), per camera


def make_flow(kind: str) -> FlowEstimator | None:
    """``dis`` (DIS fast preset, as stt-eval), ``dis:<preset>`` or ``none``."""
    if kind == "none":
        return None
    if kind == "dis":
        return FlowEstimator("fast")
    if kind.startswith("dis:"):
        return FlowEstimator(kind.split(":", 1)[1])
    raise ValueError(f"flow {kind!r}: choose dis, dis:<preset> (ultrafast, fast, medium) or none")


@dataclass
class FrameRecord:
    stamp_ns: int
    processed: bool
    reset: str = ""  # why the ring buffer was reset before this frame
    tc: float = float("nan")  # mIoU of (warped previous mask, this mask), 0..1
    tc_pixel: float = float("nan")
    inference_ms: float = float("nan")
    end_to_end_ms: float = float("nan")
    rejected: str = ""


def stats(values: list[float]) -> dict[str, float | None]:
    v = np.asarray([x for x in values if np.isfinite(x)], np.float64)
    if v.size == 0:
        return {"mean": None, "p50": None, "p90": None, "p99": None, "max": None, "n": 0}
    return {"mean": float(v.mean()), "p50": float(np.percentile(v, 50)), "p90": float(np.percentile(v, 90)),
            "p99": float(np.percentile(v, 99)), "max": float(v.max()), "n": int(v.size)}


class CameraMetrics:
    """Metrics of one camera stream (see the module docstring)."""

    def __init__(self, name: str, topic: str, label_topic: str | None, num_classes: int,
                 flow: FlowEstimator | None, class_names: list[str] | None = None) -> None:
        self.name, self.topic, self.label_topic = name, topic, label_topic
        self.num_classes = num_classes
        self.flow = flow
        self.class_names = class_names or [f"class_{i}" for i in range(num_classes)]
        self.frames: list[FrameRecord] = []
        self.cm = ConfusionMatrix(num_classes)
        self.tc = TCAccumulator(num_classes)
        self.labelled = 0
        self.label_errors: list[str] = []  # the first few, for the report
        self.label_error_count = 0
        self._prev: tuple[np.ndarray, np.ndarray] | None = None  # (rgb, mask) of the last processed frame
        self._preds: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        self._labels: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()

    # ------------------------------------------------------------------ feeding
    def add_frame(self, stamp_ns: int, rgb: np.ndarray, mask: np.ndarray, inference_ms: float,
                  end_to_end_ms: float, reset: str = "") -> FrameRecord:
        rec = FrameRecord(stamp_ns, True, reset, inference_ms=inference_ms, end_to_end_ms=end_to_end_ms)
        if reset:
            self._prev = None
        if self.flow is not None and self._prev is not None and self._prev[0].shape == rgb.shape:
            prev_rgb, prev_mask = self._prev
            agreement = pair_agreement(prev_mask, mask, self.flow.backward(prev_rgb, rgb), self.num_classes)
            self.tc.add(agreement)
            rec.tc, rec.tc_pixel = agreement.miou, agreement.pixel_agreement
        self._prev = (rgb, mask)
        self.frames.append(rec)
        label = self._labels.pop(stamp_ns, None)
        if label is not None:
            self._score(stamp_ns, mask, label)
        elif self.label_topic:
            self._preds[stamp_ns] = mask
            while len(self._preds) > PENDING:
                self._preds.popitem(last=False)
        return rec

    def add_dropped(self, stamp_ns: int, reason: str = "") -> FrameRecord:
        """A frame without a mask: dropped by the node (reason empty) or rejected (reason)."""
        rec = FrameRecord(stamp_ns, False, rejected=reason)
        self.frames.append(rec)
        self._labels.pop(stamp_ns, None)
        return rec

    def add_label(self, stamp_ns: int, label: np.ndarray) -> None:
        pred = self._preds.pop(stamp_ns, None)
        if pred is not None:
            self._score(stamp_ns, pred, label)
            return
        if any(f.stamp_ns == stamp_ns and not f.processed for f in self.frames[-4:]):
            return  # its frame was dropped: no prediction to score
        self._labels[stamp_ns] = label
        while len(self._labels) > PENDING:
            self._labels.popitem(last=False)

    def label_error(self, text: str) -> None:
        self.label_error_count += 1
        if len(self.label_errors) < 10:
            self.label_errors.append(text)

    def _score(self, stamp_ns: int, pred: np.ndarray, label: np.ndarray) -> None:
        if pred.shape != label.shape:
            self.label_error(f"label at {stamp_ns} is {label.shape[::-1]}, mask {pred.shape[::-1]}")
            return
        self.cm.update(pred, label)
        self.labelled += 1

    # ------------------------------------------------------------------ results
    @property
    def processed(self) -> list[FrameRecord]:
        return [f for f in self.frames if f.processed]

    def summary(self) -> dict:
        done = self.processed
        dropped = [f for f in self.frames if not f.processed and not f.rejected]
        rejected = [f for f in self.frames if f.rejected]
        labelled = self.labelled > 0
        duration = (self.frames[-1].stamp_ns - self.frames[0].stamp_ns) / 1e9 if len(self.frames) > 1 else 0.0
        return {
            "camera": self.name, "topic": self.topic, "label_topic": self.label_topic,
            "frames": len(self.frames), "processed": len(done), "dropped": len(dropped), "rejected": len(rejected),
            "resets": sum(1 for f in done if f.reset), "duration_s": duration,
            "tc": 100 * self.tc.value() if self.tc.pairs else None, "tc_pairs": self.tc.pairs,
            "tc_frame_mean": _nanmean([f.tc for f in done]),
            "tc_frame_min": _nanmin([f.tc for f in done]),
            "miou": 100 * self.cm.miou() if labelled else None, "labelled_frames": self.labelled,
            "pixel_accuracy": 100 * self.cm.pixel_accuracy() if labelled else None,
            "per_class_iou": percent_by_class(self.cm.iou(), self.class_names) if labelled else {},
            "per_class_tc": percent_by_class(self.tc.per_class(), self.class_names) if self.tc.pairs else {},
            "inference_ms": stats([f.inference_ms for f in done]),
            "end_to_end_ms": stats([f.end_to_end_ms for f in done]),
            "label_errors": self.label_errors, "label_error_count": self.label_error_count,
            "rejections": sorted({f.rejected for f in rejected})[:10],
        }


def _nanmean(values: list[float]) -> float | None:
    v = [x for x in values if np.isfinite(x)]
    return 100 * float(np.mean(v)) if v else None


def _nanmin(values: list[float]) -> float | None:
    v = [x for x in values if np.isfinite(x)]
    return 100 * float(np.min(v)) if v else None
