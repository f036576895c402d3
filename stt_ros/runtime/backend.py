"""One interface for every inference backend, so callers (the node, bag evaluation) never know
which one runs. A backend holds the shared model; each stream's state (its ring buffer) is made by
``create_state`` and lives where the backend computes (torch device, ONNX Runtime, TensorRT).

This module imports neither torch nor any backend's library: the backends live one per module
(:mod:`~stt_ros.runtime.torch_backend`, :mod:`~stt_ros.runtime.onnx_backend`,
:mod:`~stt_ros.runtime.tensorrt_backend`) and :func:`stt_ros.runtime.factory.create_backend`
picks one by name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from stt_ros.config import STTConfig


class StreamState(Protocol):
    """Per-stream state a backend keeps between frames."""

    capacity: int
    fill: int

    def reset(self) -> None: ...


@dataclass
class BackendOutput:
    class_map: np.ndarray  # (net_h, net_w) uint8 class ids
    logits: np.ndarray | None = None  # (classes, net_h, net_w) float32, on request
    timings: dict[str, float] = field(default_factory=dict)  # milliseconds


class NoMemory:
    """State of a per-frame baseline: nothing to remember."""

    capacity = 0
    fill = 0

    def reset(self) -> None:
        pass


class Backend(ABC):
    """Runs one streaming step of the model for one stream's state.

    A new backend implements ``create_state`` and ``infer``; ``infer`` starts with
    :meth:`check_input`, so every backend refuses the same inputs with the same message before it
    touches the stream's state.
    """

    name: str = ""
    #: whether ``infer(..., return_logits=True)`` can be served (an exported graph may lack logits)
    has_logits: bool = True
    #: what to re-export when the logits are missing (the graph or plan file), for the error message
    source: object = ""

    def __init__(self, config: STTConfig) -> None:
        self.config = config

    @abstractmethod
    def create_state(self) -> StreamState:
        """A fresh, empty per-stream state (ring buffer) for this backend."""

    @abstractmethod
    def infer(self, image: np.ndarray, state: StreamState, return_logits: bool = False) -> BackendOutput:
        """``image``: RGB uint8 (net_h, net_w, 3). Runs the step against ``state``'s past frames,
        then pushes this frame into it."""

    #: how :meth:`infer_many` runs several streams' frames: "sequential" (one after the other),
    #: "batched" (one forward pass over a batch) or "concurrent" (each stream's own request or
    #: execution context, all started before any is waited for)
    batching: str = "sequential"

    def infer_many(self, images: Sequence[np.ndarray], states: Sequence[StreamState],
                   return_logits: bool = False) -> list[BackendOutput]:
        """One step for each of several streams (cross-camera batching): ``images[i]`` is the next
        frame of the stream whose state is ``states[i]`` (distinct states). Each stream's result and
        ring buffer are those :meth:`infer` would give it alone; every input is checked before any
        state is touched, so one bad frame raises without stepping the others. The timings of each
        output are the whole call's (the streams ran together)."""
        self.check_many(images, states, return_logits)
        return [self.infer(image, state, return_logits) for image, state in zip(images, states, strict=True)]

    def check_many(self, images: Sequence[np.ndarray], states: Sequence[StreamState],
                   return_logits: bool = False) -> None:
        """ValueError unless every image is what :meth:`infer` takes and the states are distinct."""
        if len(images) != len(states):
            raise ValueError(f"infer_many got {len(images)} images for {len(states)} stream states")
        if len({id(s) for s in states}) != len(states):
            raise ValueError("infer_many got the same stream state twice (one frame per stream and call)")
        for image in images:
            self.check_input(image, return_logits)

    def check_input(self, image: np.ndarray, return_logits: bool = False) -> None:
        """ValueError unless ``image`` is what :meth:`infer` takes and ``return_logits`` can be served."""
        expected = (self.config.input_height, self.config.input_width, 3)
        shape, dtype = getattr(image, "shape", None), getattr(image, "dtype", None)
        if not isinstance(image, np.ndarray) or shape != expected or dtype != np.uint8:
            raise ValueError(f"backend input must be uint8 {expected}, got {dtype} {shape}")
        if return_logits and not self.has_logits:
            raise ValueError(f"{self.source} has no logits output; export it with `stt-export --logits`")
