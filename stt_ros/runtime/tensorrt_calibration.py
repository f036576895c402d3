"""int8 calibration for the TensorRT backend: consecutive frames and the real memory inputs.

An entropy calibrator (``IInt8EntropyCalibrator2``) streams frames from a directory of images or
a rosbag2 (read by :mod:`stt_ros.runtime.calibration`, shared with OpenVINO's int8); the memory
inputs it feeds are the real keys/values of the previous frames, computed with onnxruntime from
the same graph, so the attention path is calibrated on real data. The calibration cache is kept beside the plan.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stt_ros.config import STTConfig
from stt_ros.model.graph_contract import IMAGE_INPUT, VALID_INPUT, memory_input_name
from stt_ros.runtime.calibration import (  # noqa: F401 (re-exported: the reader moved to calibration.py)
    DEFAULT_CALIB_FRAMES,
    IMAGE_SUFFIXES,
    calibration_descriptor,
    calibration_images,
)
from stt_ros.runtime.tensorrt_cuda import check

log = logging.getLogger(__name__)

def make_calibrator(trt: Any, cudart: Any, onnx_path: Path, config: STTConfig, source: str | Path | None,
                    frames: int, cache: Path | None, topic: str | None) -> Any:
    """An IInt8EntropyCalibrator2 fed with consecutive frames; memory inputs from onnxruntime."""
    from stt_ros.runtime.onnx_backend import OnnxRuntimeBackend, OrtStreamState
    from stt_ros.runtime.preprocess import Preprocessor

    class StepCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.images = iter(calibration_images(source, frames, topic)) if source is not None else iter(())
            self.pre = Preprocessor(config.input_height, config.input_width, config.resize_mode,
                                    tuple(round(m * 255) for m in config.mean))
            # the previous frames' keys/values: the same graph on onnxruntime's CPU provider
            self.ort = OnnxRuntimeBackend(config.replace(backend="onnxruntime", device="cpu", precision="fp32"),
                                          onnx_path=onnx_path) if source is not None else None
            self.state = self.ort.create_state() if self.ort is not None else None
            self.buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)
            self.count = 0

        def get_batch_size(self) -> int:
            return 1

        def _upload(self, name: str, array: np.ndarray) -> int:
            array = np.ascontiguousarray(array)
            if name not in self.buffers:
                self.buffers[name] = (check(cudart.cudaMalloc(array.nbytes), "cudaMalloc"), array.nbytes)
            ptr, _ = self.buffers[name]
            check(cudart.cudaMemcpy(ptr, array.ctypes.data, array.nbytes,
                                    cudart.cudaMemcpyKind.cudaMemcpyHostToDevice), "cudaMemcpy")
            return ptr

        def get_batch(self, names: Sequence[str]) -> list[int] | None:
            try:
                image = next(self.images)
            except StopIteration:
                log.info("calibration: %d frames", self.count)
                return None
            net, _ = self.pre(image)
            feeds = {IMAGE_INPUT: net[None]}
            if isinstance(self.state, OrtStreamState):
                slots, valid, _ = self.state.ring.bindings()
                for k, slot in enumerate(slots):
                    feeds[memory_input_name(k)] = self.state.arrays[slot]
                feeds[VALID_INPUT] = np.array(valid, np.bool_)
            ptrs = [self._upload(name, feeds[name]) for name in names]
            self.ort.infer(net, self.state)  # push this frame's keys/values for the next one
            self.count += 1
            return ptrs

        def read_calibration_cache(self) -> bytes | None:
            if cache is not None and cache.is_file():
                log.info("using calibration cache %s", cache)
                return cache.read_bytes()
            return None

        def write_calibration_cache(self, data: Any) -> None:
            if cache is not None:
                from stt_ros.weights import atomic_write

                atomic_write(cache, lambda tmp: Path(tmp).write_bytes(bytes(data)))

        def __del__(self) -> None:
            for ptr, _ in self.buffers.values():
                cudart.cudaFree(ptr)

    return StepCalibrator()
