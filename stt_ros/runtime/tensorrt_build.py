"""Building a TensorRT engine from the ``stt-export`` graph (fp32, fp16, or int8 with fp16 fallback)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from stt_ros.config import ConfigError, STTConfig
from stt_ros.runtime.tensorrt_calibration import DEFAULT_CALIB_FRAMES, make_calibrator
from stt_ros.runtime.tensorrt_cuda import EngineError

log = logging.getLogger(__name__)

DEFAULT_WORKSPACE_MIB = 4096


def _parse_onnx(trt: Any, onnx_path: Path, logger: Any) -> tuple[Any, Any, Any]:
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes(), str(onnx_path)):
        errors = "\n  ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT {trt.__version__} cannot parse {onnx_path}:\n  {errors}\n"
                          f"(re-export with stt-export; its tests check the graph against TensorRT's operator list)")
    return builder, network, parser


def build_engine(trt: Any, cudart: Any, onnx_path: str | Path, config: STTConfig, precision: str,
                 workspace_mib: int = DEFAULT_WORKSPACE_MIB, calib_source: str | Path | None = None,
                 calib_frames: int = DEFAULT_CALIB_FRAMES, calib_cache: str | Path | None = None,
                 calib_topic: str | None = None) -> bytes:
    """Serialized engine for the graph at ``onnx_path``; ``trt``/``cudart`` as
    :func:`stt_ros.runtime.tensorrt_cuda.import_tensorrt` returns them."""
    onnx_path = Path(onnx_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder, network, _parser = _parse_onnx(trt, onnx_path, logger)
    bconf = builder.create_builder_config()
    bconf.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mib) << 20)
    calibrator = None  # referenced here until the build is done (TensorRT calls back into it)
    if precision in ("fp16", "int8"):
        bconf.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        bconf.set_flag(trt.BuilderFlag.INT8)
        cache = Path(calib_cache) if calib_cache else None
        if calib_source is None and not (cache and cache.is_file()):
            raise ConfigError("precision=int8 needs calibration frames: give a directory of images or a rosbag2 "
                              "(--calib-dir / calib_source=...)")
        calibrator = make_calibrator(trt, cudart, onnx_path, config, calib_source, calib_frames, cache, calib_topic)
        bconf.int8_calibrator = calibrator
    log.info("building a TensorRT %s %s engine from %s (workspace %d MiB); this takes minutes", trt.__version__,
             precision, onnx_path.name, workspace_mib)
    t0 = time.perf_counter()
    plan = builder.build_serialized_network(network, bconf)
    if plan is None:
        raise EngineError(f"TensorRT could not build a {precision} engine from {onnx_path} (see its log above); "
                          f"try a larger workspace (--workspace-mib, now {workspace_mib}) or precision=fp16")
    log.info("engine built in %.0f s%s", time.perf_counter() - t0, " (int8 calibrated)" if calibrator else "")
    return bytes(plan)
