"""onnxruntime backend: runs the streaming-step graph written by ``stt-export``.

Providers are taken by preference (TensorRT, CUDA, CPU) among those this onnxruntime build offers:
``device=cpu`` runs on the CPU provider only; ``device=cuda[:N]`` needs the TensorRT or CUDA
provider (``pip install onnxruntime-gpu``) and keeps CPU as the fallback for nodes they do not
take. The providers actually active are logged and kept in :attr:`OnnxRuntimeBackend.providers`.

Each stream's state holds its ring buffer itself: T + 1 preallocated slots (numpy arrays, or
CUDA OrtValues on a GPU provider) wrapped once in OrtValues, an IOBinding of its own, the
``frame_valid`` flags and the class-map output buffer. A step rebinds the slots nearest first
(:class:`stt_ros.runtime.graph_io.SlotRing`) and binds ``new_memory`` to the spare slot, so no
frame's keys/values are ever copied or allocated.
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
    VALID_INPUT,
    expected_io,
    memory_input_name,
)
from stt_ros.model.specs import MODEL_SPECS
from stt_ros.runtime.backend import Backend, BackendOutput, NoMemory, StreamState
from stt_ros.runtime.graph_io import SlotRing, SlotRingState, check_graph, resolve_graph_path

log = logging.getLogger(__name__)

TRT_EP, CUDA_EP, CPU_EP = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
#: Preference order for a GPU device.
GPU_PREFERENCE = (TRT_EP, CUDA_EP)
_ORT_TYPES = {"tensor(float)": "float32", "tensor(uint8)": "uint8", "tensor(bool)": "bool", "tensor(int32)": "int32",
              "tensor(int64)": "int64", "tensor(float16)": "float16"}


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise ConfigError("backend=onnxruntime needs the onnxruntime package: `pip install onnxruntime` "
                          "(CPU) or `pip install onnxruntime-gpu` (CUDA/TensorRT providers)") from exc
    return onnxruntime


def _device_id(device: str) -> int:
    if device == "cuda":
        return 0
    try:
        return int(device.split(":", 1)[1])
    except (IndexError, ValueError):
        raise ConfigError(f"device={device!r}: use cpu, cuda or cuda:N") from None


def choose_providers(device: str, available: Sequence[str], precision: str = "fp32", requested: Sequence[str] = (),
                     cache_dir: str | Path | None = None) -> list[tuple[str, dict[str, Any]]]:
    """Providers (name, options) to ask onnxruntime for, best first.

    ``requested`` (names) overrides the preference order; each must be available. ``precision``
    fp16 needs the TensorRT provider (which then builds fp16 engines).
    """
    if device != "cpu" and not device.startswith("cuda"):
        raise ConfigError(f"device={device!r}: backend=onnxruntime runs on cpu, cuda or cuda:N")
    dev = 0 if device == "cpu" else _device_id(device)
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise ConfigError(f"onnxruntime providers {missing} are not available in this build "
                              f"(available: {list(available)})")
        names = list(requested)
    elif device == "cpu":
        names = [CPU_EP]
    else:
        names = [p for p in GPU_PREFERENCE if p in available]
        if not names:
            raise ConfigError(f"device={device} but this onnxruntime offers no GPU provider (available: "
                              f"{list(available)}); `pip install onnxruntime-gpu` (and TensorRT for its provider), "
                              f"or use device=cpu")
        names.append(CPU_EP)
    if precision == "fp16" and TRT_EP not in names:
        raise ConfigError(f"precision=fp16 with backend=onnxruntime needs the TensorRT provider (have {names}); "
                          f"use precision=fp32, or backend=tensorrt")
    out = []
    for name in names:
        opts: dict[str, Any] = {}
        if name in (TRT_EP, CUDA_EP):
            opts["device_id"] = dev
        if name == TRT_EP:
            opts["trt_fp16_enable"] = precision == "fp16"
            if cache_dir is not None:
                opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(cache_dir))
        out.append((name, opts))
    return out


class OrtStreamState(SlotRingState):
    """One stream's ring buffer for :class:`OnnxRuntimeBackend` (T + 1 slots bound in place)."""

    def __init__(self, backend: OnnxRuntimeBackend) -> None:
        ort = backend.ort
        cfg = backend.config
        self.ring = SlotRing(cfg.key_frames)
        self.capacity = cfg.key_frames
        shape = backend.memory_shape
        dev = backend.device_type
        # zeros: slots bound to invalid inputs are masked, but must never hold NaN (0 * NaN = NaN)
        arrays = [np.zeros(shape, np.float32) for _ in range(self.ring.num_slots)]
        self.slots = [ort.OrtValue.ortvalue_from_numpy(a, dev, backend.device_id) for a in arrays]
        #: the slots' host arrays when they live in CPU memory (the OrtValues wrap them), else None
        self.arrays = arrays if dev == "cpu" else None
        self.valid = np.zeros(cfg.key_frames, np.bool_)
        self.class_map = np.zeros((1, cfg.input_height, cfg.input_width), np.int32)
        self.binding = backend.session.io_binding()
        self.binding.bind_ortvalue_input(VALID_INPUT, ort.OrtValue.ortvalue_from_numpy(self.valid))
        self.binding.bind_ortvalue_output(CLASS_OUTPUT, ort.OrtValue.ortvalue_from_numpy(self.class_map))
        self.logits = None
        if backend.has_logits:  # bound once where the graph computes it: the argmax reads it there anyway
            shape = (1, cfg.num_classes, cfg.input_height, cfg.input_width)
            self.logits = ort.OrtValue.ortvalue_from_numpy(np.zeros(shape, np.float32), dev, backend.device_id)
            self.binding.bind_ortvalue_output(LOGITS_OUTPUT, self.logits)


class OnnxRuntimeBackend(Backend):
    """Runs the exported streaming step with onnxruntime; same interface and results as TorchBackend.

    ``onnx_path``: the graph (default: ``config.weights`` if it is an .onnx file, else the .onnx
    beside the checkpoint). ``providers``: explicit provider names (default: by preference for
    ``config.device``). ``threads``: intra-op threads (0 = onnxruntime's default).
    """

    name = "onnxruntime"

    def __init__(self, config: STTConfig, onnx_path: str | Path | None = None, providers: Sequence[str] = (),
                 threads: int = 0, session_options: Any = None) -> None:
        if config.precision == "auto":  # onnxruntime's CPU and CUDA providers run the graph in fp32
            config = config.replace(precision="fp32")
        super().__init__(config)
        self.precision = config.precision
        self.ort = ort = _import_ort()
        self.path = self.source = resolve_graph_path(config, onnx_path, self.name)
        chosen = choose_providers(config.device, ort.get_available_providers(), config.precision, providers,
                                  cache_dir=self.path.parent / ".ort_trt_cache")
        so = session_options or ort.SessionOptions()
        if threads > 0:
            so.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), so, providers=[n for n, _ in chosen],
                                                provider_options=[o for _, o in chosen])
        except Exception as exc:  # onnxruntime raises its own exception types for invalid graphs
            raise ConfigError(f"onnxruntime cannot load {self.path}: {exc}") from exc
        self.providers: list[str] = self.session.get_providers()
        log.info("onnxruntime %s: %s runs %s (providers %s)", ort.__version__, self.providers[0], self.path.name,
                 ", ".join(self.providers))
        if chosen[0][0] != self.providers[0]:
            log.warning("onnxruntime fell back from %s to %s (see onnxruntime's log for why)", chosen[0][0],
                        self.providers[0])
        inputs = {i.name: (tuple(i.shape), _ORT_TYPES.get(i.type, i.type)) for i in self.session.get_inputs()}
        outputs = {o.name: (tuple(o.shape), _ORT_TYPES.get(o.type, o.type)) for o in self.session.get_outputs()}
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        self.has_logits = check_graph(inputs, outputs, meta, config, str(self.path))
        self.temporal = MODEL_SPECS[config.model].temporal
        self.memory_shape = expected_io(config)[0][memory_input_name(0)][0] if self.temporal else ()
        on_gpu = self.providers[0] in GPU_PREFERENCE
        self.device_type = "cuda" if on_gpu else "cpu"
        self.device_id = _device_id(config.device) if on_gpu else 0

    def create_state(self) -> StreamState:
        return OrtStreamState(self) if self.temporal else NoMemory()

    def infer(self, image: np.ndarray, state: StreamState, return_logits: bool = False) -> BackendOutput:
        self.check_input(image, return_logits)
        t0 = time.perf_counter()
        x = np.ascontiguousarray(image)[None]
        logits = None
        if isinstance(state, OrtStreamState):
            b = state.binding
            b.bind_cpu_input(IMAGE_INPUT, x)
            inputs, valid, out = state.ring.bindings()
            for k, slot in enumerate(inputs):
                b.bind_ortvalue_input(memory_input_name(k), state.slots[slot])
            state.valid[:] = valid
            b.bind_ortvalue_output(MEMORY_OUTPUT, state.slots[out])
            self.session.run_with_iobinding(b)
            state.ring.commit(out)
            class_map = state.class_map[0].astype(np.uint8)
            if return_logits:
                logits = state.logits.numpy()[0].copy()  # the buffer is rewritten next step
        else:
            names = [CLASS_OUTPUT] + ([LOGITS_OUTPUT] if return_logits else [])
            res = self.session.run(names, {IMAGE_INPUT: x})
            class_map = res[0][0].astype(np.uint8)
            logits = res[1][0] if return_logits else None
        return BackendOutput(class_map, logits, {"network_ms": (time.perf_counter() - t0) * 1e3})
