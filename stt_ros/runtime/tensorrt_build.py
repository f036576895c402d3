"""Building a TensorRT engine from the ``stt-export`` graph: a strongly typed network on TensorRT 10 and 11.

Precision lives in the graph, not in builder flags: TensorRT 11 removed ``BuilderFlag.FP16``/``INT8``
and implicit int8 calibration (``IBuilderConfig.int8_calibrator``, ``IInt8*Calibrator``), which 10.x
had deprecated in favour of strong typing and explicit quantization. So the network is created
``STRONGLY_TYPED`` and follows the ONNX types: the fp32 graph builds fp32, an fp16 graph fp16, a
Q/DQ graph int8 where its QuantizeLinear/DequantizeLinear pairs say so
(:mod:`~stt_ros.runtime.tensorrt_precision` writes those graphs). The builder's timing cache is kept
beside the plan (``<plan>.timing``) so a rebuild (other weights, other frames) skips re-timing the
kernels it already measured.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from stt_ros.runtime.tensorrt_cuda import EngineError

log = logging.getLogger(__name__)

DEFAULT_WORKSPACE_MIB = 4096


def timing_cache_path(plan_path: str | Path) -> Path:
    """The builder timing cache kept beside a plan: ``<plan>.timing``."""
    return Path(str(plan_path) + ".timing")


def _parse_onnx(trt: Any, onnx_path: Path, logger: Any) -> tuple[Any, Any, Any]:
    builder = trt.Builder(logger)
    # explicit batch is the only mode since 10; strong typing: every tensor has the ONNX graph's type
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes(), str(onnx_path)):
        errors = "\n  ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT {trt.__version__} cannot parse {onnx_path}:\n  {errors}\n"
                          f"(re-export with stt-export; its tests check the graph against TensorRT's operator list)")
    return builder, network, parser


def build_engine(trt: Any, onnx_path: str | Path, precision: str, workspace_mib: int = DEFAULT_WORKSPACE_MIB,
                 timing_cache: str | Path | None = None) -> bytes:
    """Serialized engine for the (already typed: fp32, fp16 or Q/DQ) graph at ``onnx_path``; ``trt`` as
    :func:`stt_ros.runtime.tensorrt_cuda.import_tensorrt` returns it. ``precision`` is for the
    messages only. ``timing_cache``: read if it exists, written after the build."""
    onnx_path = Path(onnx_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder, network, _parser = _parse_onnx(trt, onnx_path, logger)
    bconf = builder.create_builder_config()
    bconf.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mib) << 20)
    cache_file = Path(timing_cache) if timing_cache else None
    if cache_file is not None:
        data = cache_file.read_bytes() if cache_file.is_file() else b""
        cache = bconf.create_timing_cache(data)
        if cache is None or not bconf.set_timing_cache(cache, False):  # another TensorRT/GPU: start afresh
            log.info("timing cache %s does not fit this TensorRT/GPU; starting a new one", cache_file.name)
            bconf.set_timing_cache(bconf.create_timing_cache(b""), False)
    log.info("building a TensorRT %s %s engine from %s (workspace %d MiB); this takes minutes", trt.__version__,
             precision, onnx_path.name, workspace_mib)
    t0 = time.perf_counter()
    plan = builder.build_serialized_network(network, bconf)
    if plan is None:
        raise EngineError(f"TensorRT could not build a {precision} engine from {onnx_path} (see its log above); "
                          f"try a larger workspace (--workspace-mib, now {workspace_mib}) or precision=fp32")
    log.info("engine built in %.0f s", time.perf_counter() - t0)
    if cache_file is not None:
        from stt_ros.weights import atomic_write

        serialized = bytes(memoryview(bconf.get_timing_cache().serialize()))
        atomic_write(cache_file, lambda tmp: Path(tmp).write_bytes(serialized))
    return bytes(memoryview(plan))
