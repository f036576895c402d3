"""Streaming inference without ROS: preprocessing, per-stream ring buffers, backends, postprocessing.

Typical use::

    cfg = STTConfig(model="stt_bise18", input_height=512, input_width=1024)
    backend = create_backend(cfg)                 # one shared model
    front = StreamingSegmenter(backend)           # one segmenter (and ring buffer) per camera
    result = front.process(rgb_image)             # result.mask: class ids at the camera's size

The names below load on first use, so importing one module of this package (say
``stt_ros.runtime.onnx_backend``) does not import torch through the others.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> module of this package that defines it
_EXPORTS = {
    "Backend": "backend", "BackendOutput": "backend", "StreamState": "backend",
    "create_backend": "factory",
    "Geometry": "preprocess", "Preprocessor": "preprocess", "postprocess": "preprocess",
    "RingBuffer": "ring_buffer",
    "SegResult": "segmenter", "StreamingSegmenter": "segmenter",
}

__all__ = ["Backend", "BackendOutput", "Geometry", "Preprocessor", "RingBuffer", "SegResult", "StreamState",
           "StreamingSegmenter", "create_backend", "postprocess"]  # = sorted(_EXPORTS), spelled out for tools

if TYPE_CHECKING:
    from stt_ros.runtime.backend import Backend, BackendOutput, StreamState
    from stt_ros.runtime.factory import create_backend
    from stt_ros.runtime.preprocess import Geometry, Preprocessor, postprocess
    from stt_ros.runtime.ring_buffer import RingBuffer
    from stt_ros.runtime.segmenter import SegResult, StreamingSegmenter


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
