"""int8 calibration for explicit quantization: consecutive frames with their real memory inputs.

An onnxruntime ``CalibrationDataReader`` for ``quantize_static``
(:func:`stt_ros.runtime.tensorrt_precision.to_qdq`): frames from a directory of images or a rosbag2
(:func:`stt_ros.runtime.calibration.calibration_images`, the reader the OpenVINO int8 path shares),
preprocessed as the backends do; the memory inputs it feeds are the real keys/values of the
previous frames, computed with onnxruntime from the same fp32 graph, so the attention path is
calibrated on real data. (TensorRT 11 removed implicit calibration, ``IInt8*Calibrator``; the
ranges now live in the graph's Q/DQ nodes, on TensorRT 10 and 11 alike.)
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from stt_ros.config import STTConfig
from stt_ros.model.graph_contract import IMAGE_INPUT, VALID_INPUT, memory_input_name
from stt_ros.runtime.calibration import DEFAULT_CALIB_FRAMES, calibration_descriptor, calibration_images

__all__ = ["DEFAULT_CALIB_FRAMES", "StepCalibrationReader", "calibration_descriptor", "calibration_images"]

log = logging.getLogger(__name__)


class StepCalibrationReader:
    """``get_next()`` -> the feeds of one streaming step (image, previous frames' memory, frame_valid), or None."""

    def __init__(self, onnx_path: str | Path, config: STTConfig, source: str | Path, frames: int,
                 topic: str | None = None) -> None:
        from stt_ros.runtime.onnx_backend import OnnxRuntimeBackend, OrtStreamState
        from stt_ros.runtime.preprocess import Preprocessor

        self.images = iter(calibration_images(source, frames, topic))
        self.pre = Preprocessor(config.input_height, config.input_width, config.resize_mode,
                                tuple(round(m * 255) for m in config.mean))
        self.ort = OnnxRuntimeBackend(config.replace(backend="onnxruntime", device="cpu", precision="fp32"),
                                      onnx_path=onnx_path)
        self.state = self.ort.create_state()
        self.stateful = isinstance(self.state, OrtStreamState)
        self.count = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        image = next(self.images, None)
        if image is None:
            log.info("calibration: %d frames", self.count)
            return None
        net, _ = self.pre(image)
        feeds = {IMAGE_INPUT: np.ascontiguousarray(net[None])}
        if self.stateful:
            slots, valid, _ = self.state.ring.bindings()
            for k, slot in enumerate(slots):
                feeds[memory_input_name(k)] = self.state.arrays[slot].copy()  # the slot is reused later
            feeds[VALID_INPUT] = np.array(valid, np.bool_)
        self.ort.infer(net, self.state)  # push this frame's keys/values for the next one
        self.count += 1
        return feeds

    def rewind(self) -> None:  # quantize_static's reader interface; one pass is all it takes
        pass
