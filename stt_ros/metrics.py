"""Accuracy (mIoU from a confusion matrix) and temporal consistency (flow-warped agreement).

Shared by the node (online TC per frame), training/evaluation and bag evaluation, so every place
reports the same numbers. Two TC protocols:

* ``stt_ros`` (the default everywhere; what the node publishes): the prediction of the previous
  frame is warped onto the current one with backward optical flow and compared with the current
  prediction. Class ids are warped with nearest sampling (never interpolated); pixels whose flow
  points outside the previous frame are not compared. Over a sequence, intersections and unions
  are summed over all consecutive pairs, then IoU is averaged over the classes that occurred.
* ``etc``: ETC's own evaluation (Liu et al., ECCV 2020, ``tool/eval_tc.py``), for comparison with
  published tables: the prediction of frame t+1 is warped back onto frame t with the forward flow
  t -> t+1, its class ids sampled bilinearly (as float) and truncated to integers as that code
  does, sampling coordinates clamped at the border (no occlusion or out-of-image mask);
  intersections and unions summed over all pairs, IoU averaged over *all* classes (a class that
  never occurs counts as 0).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

IGNORE = 255


def confusion_matrix(pred: np.ndarray, label: np.ndarray, num_classes: int, ignore_index: int = IGNORE,
                     valid: np.ndarray | None = None) -> np.ndarray:
    """(num_classes, num_classes) int64 counts, rows = label, columns = prediction.

    Pixels labelled ``ignore_index`` (or any id >= num_classes), or outside ``valid``, are skipped.
    A predicted id outside [0, num_classes) is an error (it would belong to no class).
    """
    if pred.shape != label.shape:
        raise ValueError(f"prediction {pred.shape} and label {label.shape} differ in shape")
    if valid is not None and valid.shape != label.shape:
        raise ValueError(f"valid mask {valid.shape} does not fit label {label.shape}")
    c = num_classes
    if pred.dtype == np.uint8 and label.dtype == np.uint8 and c <= 255:
        # fast path: one uint16 index per pixel; label ids >= c fall beyond the first c*c bins
        if pred.size and int(pred.max()) >= c:
            raise ValueError(f"predicted class ids must lie in [0, {c}), found up to {int(pred.max())}")
        idx = label.astype(np.uint16) * c + pred
        drop = c * c  # a bin beyond the matrix for ignored pixels
        if ignore_index < c:
            idx[label == ignore_index] = drop
        if valid is not None:
            idx[~valid] = drop
        return np.bincount(idx.ravel(), minlength=256 * c)[: c * c].reshape(c, c).astype(np.int64)
    keep = (label != ignore_index) & (label < c) & (label >= 0)
    if valid is not None:
        keep &= valid
    p = pred[keep].astype(np.int64)
    t = label[keep].astype(np.int64)
    if p.size and (p.min() < 0 or p.max() >= c):
        raise ValueError(f"predicted class ids must lie in [0, {c}), found {p.min()}..{p.max()}")
    return np.bincount(t * c + p, minlength=c * c).reshape(c, c)


def iou_per_class(cm: np.ndarray) -> np.ndarray:
    """IoU of every class; NaN for classes absent from both labels and predictions."""
    inter = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - np.diag(cm)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, np.nan)


def mean_iou(cm: np.ndarray) -> float:
    """Mean IoU over classes present in labels or predictions (NaN when there are none)."""
    iou = iou_per_class(cm)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


class ConfusionMatrix:
    """Accumulates a confusion matrix over many frames."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE) -> None:
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.matrix = np.zeros((num_classes, num_classes), np.int64)

    def update(self, pred: np.ndarray, label: np.ndarray, valid: np.ndarray | None = None) -> None:
        self.matrix += confusion_matrix(pred, label, self.num_classes, self.ignore_index, valid)

    def merge(self, other: ConfusionMatrix) -> None:
        self.matrix += other.matrix

    def iou(self) -> np.ndarray:
        return iou_per_class(self.matrix)

    def miou(self) -> float:
        return mean_iou(self.matrix)

    def pixel_accuracy(self) -> float:
        total = self.matrix.sum()
        return float(np.trace(self.matrix) / total) if total else float("nan")


# ---------------------------------------------------------------- temporal consistency
DIS_PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}


class FlowEstimator:
    """Dense optical flow with OpenCV DIS, optionally on downscaled grey images.

    ``backward(prev, cur)`` returns, for every pixel of ``cur``, the displacement to where it was
    in ``prev`` (so ``prev[y + fy, x + fx]`` is the same scene point), at ``cur``'s size.
    """

    def __init__(self, preset: str = "ultrafast", scale: float = 1.0) -> None:
        if preset not in DIS_PRESETS:
            raise ValueError(f"flow preset {preset!r}: choose one of {', '.join(DIS_PRESETS)}")
        if not 0 < scale <= 1:
            raise ValueError(f"flow scale {scale} must lie in (0, 1]")
        self.preset, self.scale = preset, scale
        self._dis = cv2.DISOpticalFlow_create(DIS_PRESETS[preset])

    @staticmethod
    def _grey(image: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(image) if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)

    def backward(self, prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
        if prev.shape[:2] != cur.shape[:2]:
            raise ValueError(f"frames differ in size: {prev.shape[:2]} vs {cur.shape[:2]}")
        h, w = cur.shape[:2]
        a, b = self._grey(cur), self._grey(prev)
        if self.scale < 1:
            size = (max(8, round(w * self.scale)), max(8, round(h * self.scale)))
            a = cv2.resize(a, size, interpolation=cv2.INTER_AREA)
            b = cv2.resize(b, size, interpolation=cv2.INTER_AREA)
        flow = self._dis.calc(a, b, None)
        if self.scale < 1:
            sx, sy = w / a.shape[1], h / a.shape[0]
            flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR)
            flow[..., 0] *= sx
            flow[..., 1] *= sy
        return flow


@functools.lru_cache(maxsize=8)
def _pixel_grid(height: int, width: int) -> np.ndarray:
    gx, gy = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return np.dstack([gx, gy])


def warp_nearest(prev_mask: np.ndarray, flow: np.ndarray, fill: int = IGNORE) -> tuple[np.ndarray, np.ndarray]:
    """Warp ``prev_mask`` onto the current frame with backward ``flow`` (H, W, 2), nearest sampling.

    Returns the warped mask and a bool map of pixels whose source lies inside the previous frame.
    """
    h, w = prev_mask.shape
    if flow.shape != (h, w, 2):
        raise ValueError(f"flow of shape {flow.shape} does not fit a mask of shape {prev_mask.shape}")
    coords = cv2.add(flow.astype(np.float32, copy=False), _pixel_grid(h, w))
    warped = cv2.remap(prev_mask, coords, None, interpolation=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                       borderValue=fill)
    inside = cv2.remap(np.ones((h, w), np.uint8), coords, None, interpolation=cv2.INTER_NEAREST,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return warped, inside.astype(bool)


@dataclass
class Agreement:
    """Temporal consistency of one frame pair."""

    miou: float  # mean IoU(warped previous, current) over classes present in either (0..1)
    pixel_agreement: float  # fraction of compared pixels with equal class (0..1)
    intersection: np.ndarray  # per class, for accumulation over a sequence
    union: np.ndarray


def pair_agreement(prev_mask: np.ndarray, cur_mask: np.ndarray, flow: np.ndarray, num_classes: int,
                   valid: np.ndarray | None = None) -> Agreement:
    """Warp the previous prediction onto the current frame and compare (``stt_ros`` protocol, see the
    module docstring). ``valid`` (bool, current frame's size) leaves out more pixels, e.g. those a
    ground-truth flow marks as occluded in the previous frame."""
    warped, inside = warp_nearest(prev_mask, flow)
    if valid is not None:
        inside &= valid
    cm = confusion_matrix(cur_mask, warped, num_classes, IGNORE, inside)
    inter = np.diag(cm).astype(np.int64)
    union = (cm.sum(0) + cm.sum(1) - np.diag(cm)).astype(np.int64)
    total = int(cm.sum())
    return Agreement(mean_iou(cm), float(inter.sum() / total) if total else float("nan"), inter, union)


def percent_by_class(values: np.ndarray, names: list[str]) -> dict[str, float | None]:
    """Per-class fractions as ``{name: percent}``, None where undefined (NaN), for JSON reports."""
    return {name: (None if np.isnan(v) else 100 * float(v)) for name, v in zip(names, values, strict=True)}


class TCAccumulator:
    """TC over a sequence (``stt_ros`` protocol): per-class intersections and unions summed over all
    consecutive pairs, then mean IoU over classes that occurred. (Not the ROS message
    ``stt_ros.msg.TemporalConsistency``, which reports one frame.)"""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.intersection = np.zeros(num_classes, np.int64)
        self.union = np.zeros(num_classes, np.int64)
        self.pairs = 0

    def add(self, agreement: Agreement) -> None:
        self.intersection += agreement.intersection
        self.union += agreement.union
        self.pairs += 1

    def merge(self, other: TCAccumulator) -> None:
        self.intersection += other.intersection
        self.union += other.union
        self.pairs += other.pairs

    def update(self, prev_mask: np.ndarray, cur_mask: np.ndarray, flow: np.ndarray) -> Agreement:
        a = pair_agreement(prev_mask, cur_mask, flow, self.num_classes)
        self.add(a)
        return a

    def per_class(self) -> np.ndarray:
        """TC of each class (NaN for a class that no prediction of any pair contained)."""
        return consistency_per_class(self.intersection, self.union)

    def value(self) -> float:
        return consistency(self.intersection, self.union)


def consistency_per_class(intersection: np.ndarray, union: np.ndarray) -> np.ndarray:
    """Per-class TC from summed intersections and unions (NaN where the union is empty)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, intersection / np.maximum(union, 1), np.nan)


def consistency(intersection: np.ndarray, union: np.ndarray) -> float:
    """TC: the mean of :func:`consistency_per_class` over classes with a non-empty union (NaN if none)."""
    present = union > 0
    return float(consistency_per_class(intersection, union)[present].mean()) if present.any() else float("nan")


# ---------------------------------------------------------------- ETC's protocol
TC_PROTOCOLS = ("stt_ros", "etc")


def warp_bilinear_clamped(mask: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """ETC's warp of a class map (its FlowNet2 ``Resample2d`` then ``astype(np.uint8)``): sample ``mask``
    at (x + u, y + v) bilinearly on the class ids as float32, with the four neighbours' indices clamped
    to the image (so beyond the border the edge value is taken), then truncate to uint8."""
    h, w = mask.shape
    if flow.shape != (h, w, 2):
        raise ValueError(f"flow of shape {flow.shape} does not fit a mask of shape {mask.shape}")
    grid = _pixel_grid(h, w)
    xf = grid[..., 0] + flow[..., 0].astype(np.float32)
    yf = grid[..., 1] + flow[..., 1].astype(np.float32)
    x0, y0 = np.floor(xf), np.floor(yf)
    alpha, beta = xf - x0, yf - y0
    xl = np.clip(x0, 0, w - 1).astype(np.intp)
    xr = np.clip(x0 + 1, 0, w - 1).astype(np.intp)
    yt = np.clip(y0, 0, h - 1).astype(np.intp)
    yb = np.clip(y0 + 1, 0, h - 1).astype(np.intp)
    m = mask.astype(np.float32)
    one = np.float32(1)
    val = ((one - alpha) * (one - beta) * m[yt, xl] + alpha * (one - beta) * m[yt, xr]
           + (one - alpha) * beta * m[yb, xl] + alpha * beta * m[yb, xr])
    return val.astype(np.uint8)


def etc_pair(pred: np.ndarray, pred_next: np.ndarray, forward_flow: np.ndarray,
             num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-class (intersection, union) of one pair in ETC's protocol: ``pred_next`` (frame t+1) warped
    onto frame t with ``forward_flow`` (for each pixel of frame t, its displacement to frame t+1),
    compared with ``pred`` (frame t); warped pixels equal to 255 are ignored (ETC's
    intersectionAndUnion)."""
    if pred.shape != pred_next.shape:
        raise ValueError(f"predictions differ in shape: {pred.shape} vs {pred_next.shape}")
    warped = warp_bilinear_clamped(pred_next, forward_flow)
    cm = confusion_matrix(pred, warped, num_classes, IGNORE)
    inter = np.diag(cm).astype(np.int64)
    return inter, (cm.sum(0) + cm.sum(1) - np.diag(cm)).astype(np.int64)


class ETCAccumulator:
    """TC over pairs in ETC's protocol: intersections and unions summed over all pairs, IoU per class
    as I / (U + 1e-10), mean over all ``num_classes`` classes."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.intersection = np.zeros(num_classes, np.int64)
        self.union = np.zeros(num_classes, np.int64)
        self.pairs = 0

    def update(self, pred: np.ndarray, pred_next: np.ndarray,
               forward_flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        inter, union = etc_pair(pred, pred_next, forward_flow, self.num_classes)
        self.intersection += inter
        self.union += union
        self.pairs += 1
        return inter, union

    def merge(self, other: ETCAccumulator) -> None:
        self.intersection += other.intersection
        self.union += other.union
        self.pairs += other.pairs

    def per_class(self) -> np.ndarray:
        return etc_consistency_per_class(self.intersection, self.union)

    def value(self) -> float:
        return etc_consistency(self.intersection, self.union)


def etc_consistency_per_class(intersection: np.ndarray, union: np.ndarray) -> np.ndarray:
    return intersection / (union + 1e-10)


def etc_consistency(intersection: np.ndarray, union: np.ndarray) -> float:
    """ETC's TC from summed intersections and unions: the mean over all classes (absent ones count 0)."""
    return float(np.mean(etc_consistency_per_class(intersection, union)))


# ---------------------------------------------------------------- the flow TC runs on
#: DIS preset and downscale of the one TC definition (node, stt-bag-eval): ``fast`` at half the
#: network size matched ``fast`` at full size on SynthDrive's exact flow (EPE 4.78 vs 4.71 px at
#: 512x1024) at half the cost (4.6 vs 9.0 ms).
TC_FLOW_PRESET = "fast"
TC_FLOW_SCALE = 0.5


def make_flow(kind: str) -> FlowEstimator | None:
    """Optical flow by name: ``dis`` (DIS with the TC defaults above), ``dis:<preset>`` (that preset
    at full size) or ``none`` (no TC). ValueError for anything else."""
    if kind == "none":
        return None
    if kind == "dis":
        return FlowEstimator(TC_FLOW_PRESET, TC_FLOW_SCALE)
    if kind.startswith("dis:") and kind.split(":", 1)[1] in DIS_PRESETS:
        return FlowEstimator(kind.split(":", 1)[1])
    raise ValueError(f"flow {kind!r}: choose dis, dis:<preset> ({', '.join(DIS_PRESETS)}) or none")
