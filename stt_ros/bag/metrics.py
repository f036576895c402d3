"""Per-camera metrics of a replayed bag: TC over time, latency, drops, resets and mIoU.

One :class:`CameraMetrics` per camera is fed every input frame in bag order, either with the
mask computed for it and its temporal consistency (offline: the camera pipeline here; online: the
mask and TemporalConsistency message stt_node published) or as dropped, plus the label images of
the bag's label topic.

* TC, ``stt_ros`` protocol (default): the one definition of :mod:`stt_ros.runtime.camera` — each
  frame's agreement with the previous one at the network input size, as the node publishes it
  live. Per-class intersections and unions are summed over all pairs, then IoU is averaged over
  classes that occurred; the per-pair mIoU is the TC-over-time curve. No pair spans a reset.
* TC, ``etc`` protocol (``--tc-protocol etc``): ETC's own evaluation
  (:func:`stt_ros.metrics.etc_pair`) on the camera-size masks and images, as published tables are
  computed at the dataset's resolution: mask t+1 warped onto frame t with forward DIS flow, bilinear
  class ids, clamped borders, mean over all classes. The per-frame curve stays the node's.
* mIoU: one confusion matrix over every frame whose label (same header stamp) is in the bag, at the
  camera size (as ``stt-eval``).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np

from stt_ros.metrics import (
    Agreement,
    ConfusionMatrix,
    ETCAccumulator,
    FlowEstimator,
    TCAccumulator,
    percent_by_class,
)

PENDING = 64  # predictions / labels waiting for their partner (same stamp), per camera


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
                 class_names: list[str] | None = None, etc_flow: FlowEstimator | None = None) -> None:
        """``etc_flow``: compute the sequence TC with ETC's protocol and this flow instead."""
        self.name, self.topic, self.label_topic = name, topic, label_topic
        self.num_classes = num_classes
        self.class_names = class_names or [f"class_{i}" for i in range(num_classes)]
        self.frames: list[FrameRecord] = []
        self.cm = ConfusionMatrix(num_classes)
        self.tc = TCAccumulator(num_classes)
        self.etc_flow = etc_flow
        self.etc = ETCAccumulator(num_classes) if etc_flow is not None else None
        self.labelled = 0
        self.label_errors: list[str] = []  # the first few, for the report
        self.label_error_count = 0
        self._prev: tuple[np.ndarray, np.ndarray] | None = None  # (rgb, mask) of the last frame, for ETC
        self._preds: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        self._labels: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()

    # ------------------------------------------------------------------ feeding
    def add_frame(self, stamp_ns: int, rgb: np.ndarray, mask: np.ndarray, inference_ms: float,
                  end_to_end_ms: float, reset: str = "", tc: Agreement | None = None) -> FrameRecord:
        """A processed frame; ``tc``: its agreement with the previous frame as the pipeline computed
        it (None after a reset, on the first frame, or without TC)."""
        rec = FrameRecord(stamp_ns, True, reset, inference_ms=inference_ms, end_to_end_ms=end_to_end_ms)
        if tc is not None:
            self.tc.add(tc)
            rec.tc, rec.tc_pixel = tc.miou, tc.pixel_agreement
        if reset:
            self._prev = None
        if self.etc is not None:
            if self._prev is not None and self._prev[0].shape == rgb.shape:
                prev_rgb, prev_mask = self._prev  # forward flow of the earlier frame: where its pixels go
                self.etc.update(prev_mask, mask, self.etc_flow.backward(rgb, prev_rgb))
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
    def sequence_tc(self) -> TCAccumulator | ETCAccumulator:
        """The accumulator of the chosen protocol."""
        return self.etc if self.etc is not None else self.tc

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
            "tc_protocol": "etc" if self.etc is not None else "stt_ros",
            "tc": 100 * self.sequence_tc.value() if self.sequence_tc.pairs else None,
            "tc_pairs": self.sequence_tc.pairs,
            "tc_frame_mean": _nanmean([f.tc for f in done]),
            "tc_frame_min": _nanmin([f.tc for f in done]),
            "miou": 100 * self.cm.miou() if labelled else None, "labelled_frames": self.labelled,
            "pixel_accuracy": 100 * self.cm.pixel_accuracy() if labelled else None,
            "per_class_iou": percent_by_class(self.cm.iou(), self.class_names) if labelled else {},
            "per_class_tc": percent_by_class(self.sequence_tc.per_class(), self.class_names)
            if self.sequence_tc.pairs else {},
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
