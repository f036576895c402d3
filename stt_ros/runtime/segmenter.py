"""StreamingSegmenter: one per camera stream, sharing one backend (and model) between streams."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from stt_ros.runtime.backend import Backend
from stt_ros.runtime.preprocess import Geometry, Preprocessor, postprocess


@dataclass
class SegResult:
    mask: np.ndarray  # uint8 class ids at the input size (or network size, see output_size)
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

    def process(self, image: np.ndarray, return_logits: bool = False) -> SegResult:
        """Segment one RGB uint8 (H, W, 3) frame, the next in this stream."""
        t0 = time.perf_counter()
        net_in, geometry = self.preprocess(image)
        t1 = time.perf_counter()
        fill = self.state.fill
        out = self.backend.infer(net_in, self.state, return_logits)
        t2 = time.perf_counter()
        mask = postprocess(out.class_map, geometry) if self.output_size == "input" else out.class_map
        t3 = time.perf_counter()
        timings = {"preprocess_ms": (t1 - t0) * 1e3, "inference_ms": (t2 - t1) * 1e3,
                   "postprocess_ms": (t3 - t2) * 1e3, "total_ms": (t3 - t0) * 1e3, **out.timings}
        return SegResult(mask, out.class_map, fill, geometry, net_in, out.logits, timings)
