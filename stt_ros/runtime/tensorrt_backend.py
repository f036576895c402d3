"""TensorRT backend: builds an engine from the ``stt-export`` graph, caches it, runs it with the ring
buffer in GPU memory.

Needs TensorRT 10.x or 11.x (``pip install 'tensorrt>=10,<12'``), cuda-python (``pip install cuda-python``) and an
NVIDIA GPU; they are imported only when a TensorRTBackend is created
(:mod:`~stt_ros.runtime.tensorrt_cuda`), so every other backend works without them. The parts:
engine cache (:mod:`~stt_ros.runtime.tensorrt_cache`: the plan beside the ONNX file, rebuilt when
the graph, precision, GPU, TensorRT version or int8 calibration frames differ), build
(:mod:`~stt_ros.runtime.tensorrt_build`: a strongly typed network, timing cache beside the plan) from
the typed graph (:mod:`~stt_ros.runtime.tensorrt_precision`: fp16, or Q/DQ int8 calibrated on
consecutive frames with their real memory inputs, :mod:`~stt_ros.runtime.tensorrt_calibration`) and
the ``stt-tensorrt`` command
(:mod:`~stt_ros.runtime.tensorrt_cli`; ``--build-only`` builds or validates the cached plan).

Run time, per stream (segmenter): T + 1 device buffers for the ring (zeroed once), bound nearest
first each step, with ``new_memory`` bound to the spare slot so the engine writes the new frame
where it stays (see :mod:`stt_ros.runtime.graph_io`): no copies. Each stream has its own CUDA
stream and execution context; with ``cuda_graph=True`` every binding pattern (at most 2 T + 2
of them) is captured once into a CUDA graph and replayed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stt_ros.config import ConfigError, STTConfig
from stt_ros.model.graph_contract import (
    CLASS_OUTPUT,
    IMAGE_INPUT,
    LOGITS_OUTPUT,
    MEMORY_OUTPUT,
    META_CONFIG,
    VALID_INPUT,
    memory_input_name,
    onnx_signature,
)
from stt_ros.model.specs import MODEL_SPECS
from stt_ros.runtime.backend import Backend, BackendOutput, StreamState
from stt_ros.runtime.calibration import DEFAULT_CALIB_FRAMES, calibration_descriptor
from stt_ros.runtime.graph_io import SlotRing, SlotRingState, check_graph, resolve_graph_path
from stt_ros.runtime.tensorrt_build import DEFAULT_WORKSPACE_MIB, build_engine, timing_cache_path
from stt_ros.runtime.tensorrt_cache import (
    PLAN_SUFFIXES,
    EngineKey,
    engine_cache_path,
    file_sha256,
    read_sidecar,
    rebuild_reason,
    saved_field,
    write_plan,
)
from stt_ros.runtime.tensorrt_cuda import DeviceBuffer, EngineError, PinnedArray, check, gpu_info, import_tensorrt
from stt_ros.runtime.tensorrt_precision import precision_graph

log = logging.getLogger(__name__)


class TrtStreamState(SlotRingState):
    """One stream's state: ring slots in device memory, its own CUDA stream, context and graphs."""

    def __init__(self, backend: TensorRTBackend) -> None:
        cudart, engine, cfg = backend.cudart, backend.engine, backend.config
        self.backend = backend
        self.capacity = cfg.key_frames if backend.temporal else 0
        self.ring = SlotRing(cfg.key_frames) if backend.temporal else None
        self.stream = check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.context = engine.create_execution_context()
        if self.context is None:
            raise EngineError("TensorRT could not create an execution context (out of GPU memory?)")
        sizes = backend.io_bytes
        self.slots = [DeviceBuffer(cudart, sizes[MEMORY_OUTPUT], zero=True)  # never NaN, even when masked
                      for _ in range(self.ring.num_slots)] if self.ring else []
        self.device = {name: DeviceBuffer(cudart, sizes[name]) for name in (IMAGE_INPUT, VALID_INPUT, CLASS_OUTPUT,
                                                                              LOGITS_OUTPUT) if name in sizes}
        h, w = cfg.input_height, cfg.input_width
        self.host_image = PinnedArray(cudart, (1, h, w, 3), np.uint8)
        self.host_class = PinnedArray(cudart, (1, h, w), np.int32)
        self.host_valid = PinnedArray(cudart, (cfg.key_frames,), np.bool_) if self.ring else None
        for name, buf in self.device.items():
            if name != VALID_INPUT or self.ring:
                self.context.set_tensor_address(name, buf.ptr)
        self.graphs: dict[tuple[int, ...], Any] = {}

    def __del__(self) -> None:
        cudart = self.backend.cudart
        for exec_graph in getattr(self, "graphs", {}).values():
            cudart.cudaGraphExecDestroy(exec_graph)
        if getattr(self, "stream", None) is not None:
            cudart.cudaStreamDestroy(self.stream)


class TensorRTBackend(Backend):
    """TensorRT engine from the exported graph; same interface and results as the other backends.

    ``onnx_path``: the graph (default from ``config.weights``, which may also name a built .plan);
    ``workspace_mib``: builder workspace limit; ``calib_source``/``calib_frames``/``calib_topic``:
    int8 calibration frames (directory of images or rosbag2); ``cuda_graph``: replay each binding
    pattern from a CUDA graph; ``rebuild``: ignore the cache; ``build_only``: build or validate
    the cached plan, then stop (no engine is loaded).
    """

    name = "tensorrt"

    def __init__(self, config: STTConfig, onnx_path: str | Path | None = None,
                 workspace_mib: int = DEFAULT_WORKSPACE_MIB, calib_source: str | Path | None = None,
                 calib_frames: int = DEFAULT_CALIB_FRAMES, calib_topic: str | None = None,
                 cuda_graph: bool = False, rebuild: bool = False, build_only: bool = False) -> None:
        if config.precision == "auto":
            # fp32 until fp16's accuracy against fp32 is measured on a GPU (stt-eval, issue 22's 0.5 mIoU/TC
            # rule for what auto may pick); precision=fp16 or int8 asks for the faster engines
            config = config.replace(precision="fp32")
            log.info("tensorrt: precision=auto runs fp32 (set precision=fp16 for the faster engine)")
        super().__init__(config)
        self.precision = config.precision
        if not config.device.startswith("cuda"):
            raise ConfigError(f"backend=tensorrt runs on a GPU: set device=cuda (or cuda:N), not {config.device!r}")
        self.trt, self.cudart = trt, cudart = import_tensorrt()
        self.device_id = 0 if config.device == "cuda" else int(config.device.split(":", 1)[1])
        gpu, cc = gpu_info(cudart, self.device_id)
        check(cudart.cudaSetDevice(self.device_id), "cudaSetDevice")
        self.temporal = MODEL_SPECS[config.model].temporal
        self.cuda_graph = cuda_graph
        path = resolve_graph_path(config, onnx_path, self.name, extra_suffixes=PLAN_SUFFIXES)
        meta: dict[str, str] = {}
        if path.suffix in PLAN_SUFFIXES:  # a prebuilt plan: use as is, refuse one of another version
            self.plan_path = path
            saved = read_sidecar(path) or {}
            if saved.get("tensorrt") not in (None, trt.__version__):
                raise EngineError(f"{path} was built with TensorRT {saved['tensorrt']}, this is {trt.__version__}: "
                                  f"plans do not carry across versions. Set weights to the .onnx file to rebuild it")
            meta = {META_CONFIG: saved["config"]} if "config" in saved else {}
        else:
            inputs, outputs, meta = onnx_signature(path)
            check_graph(inputs, outputs, meta, config, str(path))  # before minutes of building
            self.plan_path = engine_cache_path(path, config.precision, gpu, trt.__version__)
            calib = ""
            if config.precision == "int8":
                # with frames: they are part of the key; without (at run time): whatever built the plan
                calib = calibration_descriptor(calib_source, calib_frames) if calib_source is not None else \
                    saved_field(self.plan_path, "calibration")
            sha = file_sha256(path)
            key = EngineKey(sha, config.precision, gpu, cc, trt.__version__, calib)
            reason = "rebuild requested" if rebuild else rebuild_reason(self.plan_path, key)
            if reason is not None:
                log.info("TensorRT engine %s: building (%s)", self.plan_path.name, reason)
                typed = precision_graph(path, config.precision, config, calib_source, calib_frames, calib_topic, sha)
                plan = build_engine(trt, typed, config.precision, workspace_mib, timing_cache_path(self.plan_path))
                write_plan(self.plan_path, plan, key, {"config": meta.get(META_CONFIG, ""), "onnx": str(path),
                                                       "workspace_mib": workspace_mib})
            else:
                log.info("TensorRT engine %s: cached plan is up to date", self.plan_path.name)
        if build_only:
            self.engine = None
            return
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(self.plan_path.read_bytes())
        if self.engine is None:
            raise EngineError(f"TensorRT {trt.__version__} cannot load {self.plan_path} (built by another TensorRT "
                              f"version or for another GPU?). Delete it, or set weights to the .onnx file to rebuild")
        io: dict[str, tuple[tuple[int, ...], str]] = {}
        outputs: dict[str, tuple[tuple[int, ...], str]] = {}
        self.io_bytes: dict[str, int] = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(self.engine.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            self.io_bytes[name] = int(np.prod(shape)) * dtype.itemsize
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (io if is_input else outputs)[name] = (shape, dtype.name)
        self.source = self.plan_path
        self.has_logits = check_graph(io, outputs, meta, config, str(self.plan_path))
        log.info("TensorRT %s %s engine %s on %s (compute %s)%s", trt.__version__, config.precision,
                 self.plan_path.name, gpu, cc, ", CUDA graphs" if cuda_graph else "")

    def create_state(self) -> StreamState:
        if self.engine is None:
            raise EngineError("this TensorRTBackend was created with build_only=True; create it again to run")
        return TrtStreamState(self)

    def infer(self, image: np.ndarray, state: StreamState, return_logits: bool = False) -> BackendOutput:
        self.check_input(image, return_logits)
        t0 = time.perf_counter()
        pending = self._start(image, state, return_logits)
        return self._finish(state, pending, t0)

    batching = "concurrent"

    def infer_many(self, images: Sequence[np.ndarray], states: Sequence[StreamState],
                   return_logits: bool = False) -> list[BackendOutput]:
        """Every stream's step enqueued on its own CUDA stream and execution context before any is
        synchronised, so the GPU overlaps them; each against its own ring slots."""
        self.check_many(images, states, return_logits)
        t0 = time.perf_counter()
        pending = [self._start(image, state, return_logits) for image, state in zip(images, states, strict=True)]
        return [self._finish(state, p, t0) for state, p in zip(states, pending, strict=True)]

    def _start(self, image: np.ndarray, state: StreamState, return_logits: bool) -> tuple[int, np.ndarray | None]:
        """Upload, bind, enqueue and queue the downloads on the state's CUDA stream; no synchronisation.
        Returns (the ring slot the step writes, or -1; the host array the logits land in, or None)."""
        if not isinstance(state, TrtStreamState):
            raise TypeError("state was not created by this TensorRTBackend")
        cudart, kind = self.cudart, self.cudart.cudaMemcpyKind
        s, ctx = state.stream, state.context
        np.copyto(state.host_image.array[0], image)
        check(cudart.cudaMemcpyAsync(state.device[IMAGE_INPUT].ptr, state.host_image.ptr, state.host_image.nbytes,
                                      kind.cudaMemcpyHostToDevice, s), "image upload")
        key: tuple[int, ...] = ()
        out = -1
        if state.ring is not None:
            slots, valid, out = state.ring.bindings()
            state.host_valid.array[:] = valid
            check(cudart.cudaMemcpyAsync(state.device[VALID_INPUT].ptr, state.host_valid.ptr, state.host_valid.nbytes,
                                          kind.cudaMemcpyHostToDevice, s), "frame_valid upload")
            for k, slot in enumerate(slots):
                ctx.set_tensor_address(memory_input_name(k), state.slots[slot].ptr)
            ctx.set_tensor_address(MEMORY_OUTPUT, state.slots[out].ptr)
            key = (*slots, out)
        self._enqueue(state, key)
        check(cudart.cudaMemcpyAsync(state.host_class.ptr, state.device[CLASS_OUTPUT].ptr, state.host_class.nbytes,
                                      kind.cudaMemcpyDeviceToHost, s), "class map download")
        logits = None
        if return_logits:
            logits = np.empty(self.engine.get_tensor_shape(LOGITS_OUTPUT),
                              np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(LOGITS_OUTPUT))))
            check(cudart.cudaMemcpyAsync(logits.ctypes.data, state.device[LOGITS_OUTPUT].ptr, logits.nbytes,
                                          kind.cudaMemcpyDeviceToHost, s), "logits download")
        return out, logits

    def _finish(self, state: TrtStreamState, pending: tuple[int, np.ndarray | None], t0: float) -> BackendOutput:
        """Synchronise the state's stream, commit its ring slot, return the outputs."""
        out, logits = pending
        check(self.cudart.cudaStreamSynchronize(state.stream), "cudaStreamSynchronize")
        if state.ring is not None:
            state.ring.commit(out)
        class_map = state.host_class.array[0].astype(np.uint8)
        return BackendOutput(class_map, None if logits is None else logits[0],
                             {"network_ms": (time.perf_counter() - t0) * 1e3})

    def _enqueue(self, state: TrtStreamState, key: tuple[int, ...]) -> None:
        cudart, s = self.cudart, state.stream
        if not self.cuda_graph:
            if not state.context.execute_async_v3(s):
                raise EngineError("TensorRT execute_async_v3 failed (see its log)")
            return
        graph_exec = state.graphs.get(key)
        if graph_exec is None:
            # first time this binding pattern: run once (TensorRT finishes lazy setup), then capture
            if not state.context.execute_async_v3(s):
                raise EngineError("TensorRT execute_async_v3 failed (see its log)")
            check(cudart.cudaStreamSynchronize(s), "cudaStreamSynchronize")
            check(cudart.cudaStreamBeginCapture(s, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal),
                   "cudaStreamBeginCapture")
            state.context.execute_async_v3(s)
            graph = check(cudart.cudaStreamEndCapture(s), "cudaStreamEndCapture")
            graph_exec = check(cudart.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
            cudart.cudaGraphDestroy(graph)
            state.graphs[key] = graph_exec
        check(cudart.cudaGraphLaunch(graph_exec, s), "cudaGraphLaunch")
