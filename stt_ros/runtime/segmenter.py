"""StreamingSegmenter: one per camera stream, sharing one backend (and model) between streams."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from stt_ros.runtime.backend import Backend
from stt_ros.runtime.preprocess import Geometry, Preprocessor, postprocess


@dataclass(frozen=True)
class Prepared:
    """A frame resized to the network input (:meth:`StreamingSegmenter.prepare`)."""

    net_in: np.ndarray  # RGB uint8 (net_h, net_w, 3)
    geometry: Geometry
    preprocess_ms: float


@dataclass
class SegResult:
    mask: np.ndarray | None  # uint8 class ids at the input size (or network size, see output_size); None
    # until :meth:`StreamingSegmenter.upsample` when the upsampling was deferred
    class_map_net: np.ndarray  # uint8 class ids at the network size
    buffer_fill: int  # past frames the temporal transformer used for this frame
    geometry: Geometry
    net_image: np.ndarray | None = None  # the RGB input resized to the network size
    logits: np.ndarray | None = None  # (classes, net_h, net_w) on request
    timings: dict[str, float] = field(default_factory=dict)  # ms: preprocess, network, postprocess, total


class StreamingSegmenter:
    """Segments one video stream frame by frame.

    Each frame is resized to the network size, run through the backend against this stream's ring
    buffer of past frames (nearest first), and its class map resized back with nearest
    neighbour. While the buffer fills, the frame attends to the frames it has (the first frame
    after start or :meth:`reset` is a plain per-frame prediction); once T frames are buffered the
    oldest is overwritten. Segmenters sharing a backend never see each other's frames.

    :meth:`process` runs the three steps; :meth:`prepare`, :meth:`infer` and :meth:`upsample` run
    them apart, so a caller can resize on one thread, run the shared model on another and bring the
    mask back to the camera size on a third (stt_node does).
    """

    def __init__(self, backend: Backend, output_size: str = "input") -> None:
        if output_size not in ("input", "network"):
            raise ValueError(f"output_size={output_size!r}: choose input or network")
        cfg = backend.config
        self.backend = backend
        self.output_size = output_size
        self.preprocess = Preprocessor(cfg.input_height, cfg.input_width, cfg.resize_mode,
                                       tuple(round(m * 255) for m in cfg.mean))
        self.state = backend.create_state()

    @property
    def fill(self) -> int:
        """Past frames currently buffered."""
        return self.state.fill

    @property
    def capacity(self) -> int:
        return self.state.capacity

    def reset(self) -> None:
        """Forget all past frames (the next frame is predicted on its own)."""
        self.state.reset()

    def prepare(self, image: np.ndarray) -> Prepared:
        """Step 1: an RGB uint8 (H, W, 3) frame resized to the network input. No state is touched."""
        t0 = time.perf_counter()
        net_in, geometry = self.preprocess(image)
        return Prepared(net_in, geometry, (time.perf_counter() - t0) * 1e3)

    def infer(self, prepared: Prepared, return_logits: bool = False, upsample: bool = True) -> SegResult:
        """Step 2: the model on the prepared frame, the next in this stream (then step 3 unless
        ``upsample`` is False: ``mask`` stays None until :meth:`upsample`)."""
        t1 = time.perf_counter()
        fill = self.state.fill
        out = self.backend.infer(prepared.net_in, self.state, return_logits)
        infer_ms = (time.perf_counter() - t1) * 1e3
        timings = {"preprocess_ms": prepared.preprocess_ms, "inference_ms": infer_ms, **out.timings}
        result = SegResult(None, out.class_map, fill, prepared.geometry, prepared.net_in, out.logits, timings)
        if upsample:
            self.upsample(result)
        return result

    @staticmethod
    def infer_many(segmenters: Sequence[StreamingSegmenter], prepared: Sequence[Prepared],
                   return_logits: bool = False, upsample: bool = True) -> list[SegResult]:
        """Step 2 for several streams at once (cross-camera batching): ``prepared[i]`` is the next frame
        of ``segmenters[i]``'s stream. They must share one backend, which runs them together
        (:meth:`Backend.infer_many`); each stream's result and buffer are those :meth:`infer` gives.
        ValueError (nothing stepped) for a bad input, segmenters of different backends, or one twice."""
        if not segmenters:
            return []
        backend = segmenters[0].backend
        if any(seg.backend is not backend for seg in segmenters):
            raise ValueError("infer_many: the segmenters must share one backend")
        fills = [seg.state.fill for seg in segmenters]
        t1 = time.perf_counter()
        outs = backend.infer_many([p.net_in for p in prepared], [seg.state for seg in segmenters], return_logits)
        infer_ms = (time.perf_counter() - t1) * 1e3
        results = []
        for seg, p, out, fill in zip(segmenters, prepared, outs, fills, strict=True):
            timings = {"preprocess_ms": p.preprocess_ms, "inference_ms": infer_ms, **out.timings}
            result = SegResult(None, out.class_map, fill, p.geometry, p.net_in, out.logits, timings)
            if upsample:
                seg.upsample(result)
            results.append(result)
        return results

    def upsample(self, result: SegResult) -> np.ndarray:
        """Step 3: the class map at the input size (or the network size); fills ``mask`` and the timings."""
        if result.mask is None:
            t2 = time.perf_counter()
            result.mask = postprocess(result.class_map_net, result.geometry) if self.output_size == "input" \
                else result.class_map_net
            t = result.timings
            t["postprocess_ms"] = (time.perf_counter() - t2) * 1e3
            t["total_ms"] = t["preprocess_ms"] + t["inference_ms"] + t["postprocess_ms"]
        return result.mask

    def process(self, image: np.ndarray, return_logits: bool = False) -> SegResult:
        """Segment one RGB uint8 (H, W, 3) frame, the next in this stream."""
        return self.infer(self.prepare(image), return_logits)
