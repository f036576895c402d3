"""TensorRT backend: builds an engine from the ``stt-export`` graph, caches it, runs it with the ring
buffer in GPU memory.

Needs TensorRT >= 10 (``pip install tensorrt``), cuda-python (``pip install cuda-python``) and an
NVIDIA GPU; they are imported here only, so every other backend works without them.

Engine cache: the plan is stored beside the ONNX file as
``<onnx stem>.<precision>.<gpu>.trt<version>.plan`` (e.g. ``stt.fp16.nvidia-a40.trt10.3.0.plan``)
with a ``.json`` sidecar holding the ONNX file's SHA-256, precision, GPU, TensorRT version and, for
int8, the calibration source. The plan is rebuilt when the file is missing or any of those
differ (:func:`rebuild_reason`); plan and sidecar are written atomically. ``stt-tensorrt
--build-only`` builds (or validates) the cached plan and exits, e.g. at install time.

int8: an entropy calibrator (``IInt8EntropyCalibrator2``) streams frames from a directory of
images (sorted by name, ideally consecutive frames of a drive) or a rosbag2 (sensor_msgs/Image or
CompressedImage); the memory inputs it feeds are the real keys/values of the previous frames,
computed with onnxruntime from the same graph, so the attention path is calibrated on real data.
The calibration cache is kept beside the plan.

Run time, per stream (segmenter): T + 1 device buffers for the ring (zeroed once), bound nearest
first each step, with ``new_memory`` bound to the spare slot so the engine writes the new frame
where it stays (see :mod:`stt_ros.runtime.graph_io`): no copies. Each stream has its own CUDA
stream and execution context; with ``cuda_graph=True`` every binding pattern (at most 2 T + 2
of them) is captured once into a CUDA graph and replayed.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import logging
import re
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stt_ros.config import ConfigError, STTConfig
from stt_ros.model.zoo import (
    CLASS_OUTPUT,
    IMAGE_INPUT,
    LOGITS_OUTPUT,
    MEMORY_OUTPUT,
    MODEL_SPECS,
    VALID_INPUT,
    memory_input_name,
)
from stt_ros.runtime.backend import Backend, BackendOutput, StreamState
from stt_ros.runtime.graph_io import (
    META_CONFIG,
    SlotRing,
    check_graph,
    onnx_signature,
    resolve_graph_path,
)

log = logging.getLogger(__name__)

INSTALL_HINT = ("`pip install tensorrt cuda-python` (TensorRT >= 10 and cuda-python for your CUDA major version, "
                "e.g. `pip install tensorrt-cu12 'cuda-python>=12,<13'`) on a machine with an NVIDIA GPU and driver")
PLAN_SUFFIXES = (".plan", ".engine")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")
DEFAULT_WORKSPACE_MIB = 4096
DEFAULT_CALIB_FRAMES = 100


class EngineError(RuntimeError):
    """A TensorRT engine could not be built, loaded or run; the message says why and what to do."""


# ---------------------------------------------------------------------------- imports (GPU machines only)
def import_tensorrt() -> tuple[Any, Any]:
    """(tensorrt, cuda runtime bindings) or a ConfigError saying exactly what to install."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise ConfigError(f"backend=tensorrt needs TensorRT's Python package, which is not installed: {INSTALL_HINT}"
                          ) from exc
    major = int(str(trt.__version__).split(".")[0])
    if major < 10:
        raise ConfigError(f"backend=tensorrt needs TensorRT >= 10, found {trt.__version__}: {INSTALL_HINT}")
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError as exc:
            raise ConfigError(f"backend=tensorrt needs cuda-python, which is not installed: {INSTALL_HINT}") from exc
    return trt, cudart


def _code(err: Any) -> int:
    return int(getattr(err, "value", err))


def _check(result: Any, what: str) -> Any:
    """Unpack a cuda-python call result ``(err, *values)``; raise EngineError on an error code."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if _code(err) != 0:
        raise EngineError(f"CUDA error in {what}: {err}")
    return values[0] if len(values) == 1 else (values or None)


def gpu_info(cudart: Any, device: int) -> tuple[str, str]:
    """(GPU name, compute capability) of ``device``; EngineError if there is no usable GPU."""
    err, count = cudart.cudaGetDeviceCount()
    if _code(err) != 0 or count == 0:
        raise EngineError(f"backend=tensorrt needs an NVIDIA GPU, but CUDA reports none ({err}); check the driver "
                          f"(nvidia-smi), or use backend=onnxruntime or backend=torch on this machine")
    if device >= count:
        raise EngineError(f"device=cuda:{device} but this machine has {count} GPU(s); use cuda:0..cuda:{count - 1}")
    prop = _check(cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
    return name.strip("\x00 "), f"{prop.major}.{prop.minor}"


# ---------------------------------------------------------------------------- engine cache (pure)
def gpu_slug(name: str) -> str:
    """File-name form of a GPU name: 'NVIDIA A40' -> 'nvidia-a40'."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu"


def engine_cache_path(onnx_path: str | Path, precision: str, gpu_name: str, trt_version: str) -> Path:
    """``<dir>/<stem>.<precision>.<gpu>.trt<version>.plan`` beside the ONNX file."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(f"{onnx_path.stem}.{precision}.{gpu_slug(gpu_name)}.trt{trt_version}.plan")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class EngineKey:
    """Everything a cached plan depends on; a difference in any field means rebuild."""

    onnx_sha256: str
    precision: str
    gpu: str
    compute_capability: str
    tensorrt: str
    calibration: str = ""  # int8: description of the calibration frames


def sidecar_path(plan_path: str | Path) -> Path:
    return Path(str(plan_path) + ".json")


def rebuild_reason(plan_path: str | Path, key: EngineKey) -> str | None:
    """Why the plan at ``plan_path`` cannot be used for ``key`` (None: it can)."""
    plan_path = Path(plan_path)
    if not plan_path.is_file():
        return f"no cached plan {plan_path.name}"
    side = sidecar_path(plan_path)
    try:
        saved = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return f"{side.name} is missing or unreadable"
    diffs = [f"{name} {saved.get(name)!r} -> {value!r}" for name, value in asdict(key).items()
             if saved.get(name) != value]
    if diffs:
        return "cached plan was built for other inputs: " + "; ".join(diffs)
    return None


def _saved_field(plan_path: str | Path, name: str) -> str:
    try:
        return str(json.loads(sidecar_path(plan_path).read_text(encoding="utf-8")).get(name, ""))
    except (OSError, json.JSONDecodeError):
        return ""


def write_plan(plan_path: str | Path, plan: bytes, key: EngineKey, extra: dict[str, Any] | None = None) -> None:
    """Write plan and sidecar atomically (sidecar last: a plan without one is rebuilt)."""
    from stt_ros.weights import atomic_write

    atomic_write(plan_path, lambda tmp: Path(tmp).write_bytes(plan))
    meta = {**asdict(key), **(extra or {})}
    atomic_write(sidecar_path(plan_path), lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2) + "\n"))


# ---------------------------------------------------------------------------- calibration frames
def _image_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _decode_ros_image(msg: Any, msgtype: str) -> np.ndarray | None:
    import cv2

    if msgtype.endswith("CompressedImage"):
        bgr = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
        return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    enc = msg.encoding.lower()
    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}.get(enc)
    if channels is None:
        return None
    rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
    img = rows[:, :msg.width * channels].reshape(msg.height, msg.width, channels)
    code = {"bgr8": cv2.COLOR_BGR2RGB, "rgba8": cv2.COLOR_RGBA2RGB, "bgra8": cv2.COLOR_BGRA2RGB,
            "mono8": cv2.COLOR_GRAY2RGB}.get(enc)
    return np.ascontiguousarray(img if code is None else cv2.cvtColor(img, code))


def calibration_images(source: str | Path, limit: int = DEFAULT_CALIB_FRAMES, topic: str | None = None
                       ) -> Iterator[np.ndarray]:
    """RGB uint8 frames from a directory of images (sorted by path) or a rosbag2 (a bag directory
    with metadata.yaml, or an .mcap/.db3 file): at most ``limit``, in order."""
    import cv2

    source = Path(source)
    if not source.exists():
        raise ConfigError(f"calibration source {source} does not exist (a directory of images or a rosbag2)")
    is_bag = source.suffix in (".mcap", ".db3") or (source.is_dir() and (source / "metadata.yaml").is_file())
    count = 0
    if not is_bag:
        files = _image_files(source) if source.is_dir() else []
        if not files:
            raise ConfigError(f"{source} holds no images ({', '.join(IMAGE_SUFFIXES)}) and is not a rosbag2")
        for path in files[:limit]:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ConfigError(f"calibration image {path} cannot be decoded")
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    kinds = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
    with AnyReader([source], default_typestore=get_typestore(Stores.ROS2_KILTED)) as reader:
        conns = [c for c in reader.connections if c.msgtype in kinds and (topic is None or c.topic == topic)]
        if not conns:
            raise ConfigError(f"{source} has no image topic{f' {topic}' if topic else ''} "
                              f"(topics: {sorted({c.topic for c in reader.connections})})")
        if topic is None and len({c.topic for c in conns}) > 1:
            raise ConfigError(f"{source} has several image topics {sorted({c.topic for c in conns})}; pick one")
        for conn, _, raw in reader.messages(connections=conns):
            img = _decode_ros_image(reader.deserialize(raw, conn.msgtype), conn.msgtype)
            if img is None:
                continue
            yield img
            count += 1
            if count >= limit:
                return


def calibration_descriptor(source: str | Path, limit: int) -> str:
    """What the calibration depends on, for the cache key: path, frame limit and the names, sizes and
    mtimes of the images used (of a bag: its files)."""
    source = Path(source).resolve()
    if source.is_dir() and not (source / "metadata.yaml").is_file():
        files = _image_files(source)[:limit]
    else:
        files = sorted(source.iterdir()) if source.is_dir() else [source]
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(source) if f != source else f.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return f"{source} frames<={limit} {h.hexdigest()[:16]}"


# ---------------------------------------------------------------------------- build
def _parse_onnx(trt: Any, onnx_path: Path, logger: Any) -> tuple[Any, Any, Any]:
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes(), str(onnx_path)):
        errors = "\n  ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT {trt.__version__} cannot parse {onnx_path}:\n  {errors}\n"
                          f"(re-export with stt-export; its tests check the graph against TensorRT's operator list)")
    return builder, network, parser


def build_engine(onnx_path: str | Path, config: STTConfig, precision: str, workspace_mib: int = DEFAULT_WORKSPACE_MIB,
                 calib_source: str | Path | None = None, calib_frames: int = DEFAULT_CALIB_FRAMES,
                 calib_cache: str | Path | None = None, calib_topic: str | None = None) -> bytes:
    """Serialized engine for the graph at ``onnx_path`` (fp32, fp16, or int8 with fp16 fallback)."""
    trt, cudart = import_tensorrt()
    onnx_path = Path(onnx_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder, network, _parser = _parse_onnx(trt, onnx_path, logger)
    bconf = builder.create_builder_config()
    bconf.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mib) << 20)
    calibrator = None
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
    log.info("engine built in %.0f s", time.perf_counter() - t0)
    return bytes(plan)


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
                self.buffers[name] = (_check(cudart.cudaMalloc(array.nbytes), "cudaMalloc"), array.nbytes)
            ptr, _ = self.buffers[name]
            _check(cudart.cudaMemcpy(ptr, array.ctypes.data, array.nbytes,
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


# ---------------------------------------------------------------------------- run time
class _PinnedArray:
    """A numpy view of page-locked host memory (fast, truly asynchronous copies)."""

    def __init__(self, cudart: Any, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.cudart = cudart
        self.nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        self.ptr = _check(cudart.cudaMallocHost(self.nbytes), "cudaMallocHost")
        buf = (ctypes.c_byte * self.nbytes).from_address(self.ptr)
        self.array = np.frombuffer(buf, dtype=dtype).reshape(shape)

    def __del__(self) -> None:
        if getattr(self, "ptr", None):
            self.cudart.cudaFreeHost(self.ptr)


class _DeviceBuffer:
    def __init__(self, cudart: Any, nbytes: int, zero: bool = False) -> None:
        self.cudart = cudart
        self.nbytes = nbytes
        self.ptr = _check(cudart.cudaMalloc(nbytes), "cudaMalloc")
        if zero:
            _check(cudart.cudaMemset(self.ptr, 0, nbytes), "cudaMemset")

    def __del__(self) -> None:
        if getattr(self, "ptr", None):
            self.cudart.cudaFree(self.ptr)


class TrtStreamState:
    """One stream's state: ring slots in device memory, its own CUDA stream, context and graphs."""

    def __init__(self, backend: TensorRTBackend) -> None:
        cudart, engine, cfg = backend.cudart, backend.engine, backend.config
        self.backend = backend
        self.capacity = cfg.key_frames if backend.temporal else 0
        self.ring = SlotRing(cfg.key_frames) if backend.temporal else None
        self.stream = _check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.context = engine.create_execution_context()
        if self.context is None:
            raise EngineError("TensorRT could not create an execution context (out of GPU memory?)")
        sizes = backend.io_bytes
        self.slots = [_DeviceBuffer(cudart, sizes[MEMORY_OUTPUT], zero=True)  # never NaN, even when masked
                      for _ in range(self.ring.num_slots)] if self.ring else []
        self.device = {name: _DeviceBuffer(cudart, sizes[name]) for name in (IMAGE_INPUT, VALID_INPUT, CLASS_OUTPUT,
                                                                              LOGITS_OUTPUT) if name in sizes}
        h, w = cfg.input_height, cfg.input_width
        self.host_image = _PinnedArray(cudart, (1, h, w, 3), np.uint8)
        self.host_class = _PinnedArray(cudart, (1, h, w), np.int32)
        self.host_valid = _PinnedArray(cudart, (cfg.key_frames,), np.bool_) if self.ring else None
        for name, buf in self.device.items():
            if name != VALID_INPUT or self.ring:
                self.context.set_tensor_address(name, buf.ptr)
        self.graphs: dict[tuple[int, ...], Any] = {}

    @property
    def fill(self) -> int:
        return self.ring.fill if self.ring else 0

    def reset(self) -> None:
        if self.ring:
            self.ring.reset()

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
        super().__init__(config)
        if not config.device.startswith("cuda"):
            raise ConfigError(f"backend=tensorrt runs on a GPU: set device=cuda (or cuda:N), not {config.device!r}")
        self.trt, self.cudart = trt, cudart = import_tensorrt()
        self.device_id = 0 if config.device == "cuda" else int(config.device.split(":", 1)[1])
        gpu, cc = gpu_info(cudart, self.device_id)
        _check(cudart.cudaSetDevice(self.device_id), "cudaSetDevice")
        self.temporal = MODEL_SPECS[config.model].temporal
        self.cuda_graph = cuda_graph
        path = resolve_graph_path(config, onnx_path, self.name, extra_suffixes=PLAN_SUFFIXES)
        meta: dict[str, str] = {}
        if path.suffix in PLAN_SUFFIXES:  # a prebuilt plan: use as is, refuse one of another version
            self.plan_path = path
            side = sidecar_path(path)
            saved = json.loads(side.read_text()) if side.is_file() else {}
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
                    _saved_field(self.plan_path, "calibration")
            key = EngineKey(file_sha256(path), config.precision, gpu, cc, trt.__version__, calib)
            reason = "rebuild requested" if rebuild else rebuild_reason(self.plan_path, key)
            if reason is not None:
                log.info("TensorRT engine %s: building (%s)", self.plan_path.name, reason)
                calib_cache = self.plan_path.with_suffix(".calib")
                if config.precision == "int8" and calib_source is not None and calib_cache.is_file() and (
                        rebuild or "calibration" in reason or "onnx_sha256" in reason):
                    calib_cache.unlink()  # stale: other frames or another graph
                plan = build_engine(path, config, config.precision, workspace_mib, calib_source, calib_frames,
                                    calib_cache, calib_topic)
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
        self.has_logits = check_graph(io, outputs, meta, config, str(self.plan_path))
        log.info("TensorRT %s %s engine %s on %s (compute %s)%s", trt.__version__, config.precision,
                 self.plan_path.name, gpu, cc, ", CUDA graphs" if cuda_graph else "")

    def create_state(self) -> StreamState:
        if self.engine is None:
            raise EngineError("this TensorRTBackend was created with build_only=True; create it again to run")
        return TrtStreamState(self)

    def infer(self, image: np.ndarray, state: StreamState, return_logits: bool = False) -> BackendOutput:
        expected = (self.config.input_height, self.config.input_width, 3)
        if image.shape != expected or image.dtype != np.uint8:
            raise ValueError(f"backend input must be uint8 {expected}, got {image.dtype} {image.shape}")
        if return_logits and not self.has_logits:
            raise ValueError(f"{self.plan_path} has no logits output; export with `stt-export --logits`")
        if not isinstance(state, TrtStreamState):
            raise TypeError("state was not created by this TensorRTBackend")
        cudart, kind = self.cudart, self.cudart.cudaMemcpyKind
        t0 = time.perf_counter()
        s, ctx = state.stream, state.context
        np.copyto(state.host_image.array[0], image)
        _check(cudart.cudaMemcpyAsync(state.device[IMAGE_INPUT].ptr, state.host_image.ptr, state.host_image.nbytes,
                                      kind.cudaMemcpyHostToDevice, s), "image upload")
        key: tuple[int, ...] = ()
        out = -1
        if state.ring is not None:
            slots, valid, out = state.ring.bindings()
            state.host_valid.array[:] = valid
            _check(cudart.cudaMemcpyAsync(state.device[VALID_INPUT].ptr, state.host_valid.ptr, state.host_valid.nbytes,
                                          kind.cudaMemcpyHostToDevice, s), "frame_valid upload")
            for k, slot in enumerate(slots):
                ctx.set_tensor_address(memory_input_name(k), state.slots[slot].ptr)
            ctx.set_tensor_address(MEMORY_OUTPUT, state.slots[out].ptr)
            key = (*slots, out)
        self._enqueue(state, key)
        _check(cudart.cudaMemcpyAsync(state.host_class.ptr, state.device[CLASS_OUTPUT].ptr, state.host_class.nbytes,
                                      kind.cudaMemcpyDeviceToHost, s), "class map download")
        logits = None
        if return_logits:
            logits = np.empty(self.engine.get_tensor_shape(LOGITS_OUTPUT), np.float32)
            _check(cudart.cudaMemcpyAsync(logits.ctypes.data, state.device[LOGITS_OUTPUT].ptr, logits.nbytes,
                                          kind.cudaMemcpyDeviceToHost, s), "logits download")
        _check(cudart.cudaStreamSynchronize(s), "cudaStreamSynchronize")
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
            _check(cudart.cudaStreamSynchronize(s), "cudaStreamSynchronize")
            _check(cudart.cudaStreamBeginCapture(s, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal),
                   "cudaStreamBeginCapture")
            state.context.execute_async_v3(s)
            graph = _check(cudart.cudaStreamEndCapture(s), "cudaStreamEndCapture")
            graph_exec = _check(cudart.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
            cudart.cudaGraphDestroy(graph)
            state.graphs[key] = graph_exec
        _check(cudart.cudaGraphLaunch(graph_exec, s), "cudaGraphLaunch")


# ---------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    from stt_ros.runtime.graph_io import read_config_file

    p = argparse.ArgumentParser(
        prog="stt-tensorrt", description="Build (or validate) the cached TensorRT engine of an exported graph; "
        "without --build-only, also run it on synthetic frames and report fps.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  stt-tensorrt --config models/stt_bise18_synthdrive.yaml --onnx models/stt_bise18_synthdrive.onnx \\\n"
               "      --precision fp16 --build-only\n"
               "  stt-tensorrt --onnx /tmp/stt_1024.onnx --input-height 1024 --input-width 2048 --precision int8 \\\n"
               "      --calib-dir data/synthdrive/val/images --calib-frames 200 --build-only\n"
               "  stt-tensorrt --onnx /tmp/stt_1024.onnx --input-height 1024 --input-width 2048 --cuda-graph")
    p.add_argument("--onnx", required=True, help="graph written by stt-export (the plan is cached beside it)")
    p.add_argument("--config", help="STTConfig YAML (or ROS params file) the graph was exported with "
                   "(default: STTConfig defaults)")
    p.add_argument("--model", help="zoo model, if not in --config")
    p.add_argument("--input-height", type=int, help="network input height, if not in --config")
    p.add_argument("--input-width", type=int, help="network input width, if not in --config")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16", help="(default: %(default)s)")
    p.add_argument("--device", default="cuda", help="cuda or cuda:N (default: %(default)s)")
    p.add_argument("--workspace-mib", type=int, default=DEFAULT_WORKSPACE_MIB, help="builder workspace limit "
                   "(default: %(default)s)")
    p.add_argument("--calib-dir", help="int8: directory of images (sorted, consecutive frames) or a rosbag2")
    p.add_argument("--calib-topic", help="int8 from a bag with several image topics: the topic to use")
    p.add_argument("--calib-frames", type=int, default=DEFAULT_CALIB_FRAMES, help="int8: frames (default: %(default)s)")
    p.add_argument("--rebuild", action="store_true", help="rebuild even if the cached plan is up to date")
    p.add_argument("--build-only", action="store_true", help="build (or validate) the cached plan and exit")
    p.add_argument("--cuda-graph", action="store_true", help="replay steps from CUDA graphs")
    p.add_argument("--frames", type=int, default=50, help="frames for the fps run (default: %(default)s)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = read_config_file(args.config) if args.config else STTConfig()
        changes = {k: v for k, v in (("model", args.model), ("input_height", args.input_height),
                                     ("input_width", args.input_width)) if v is not None}
        cfg = cfg.replace(**changes, backend="tensorrt", precision=args.precision, device=args.device,
                          weights=args.onnx)
        backend = TensorRTBackend(cfg, workspace_mib=args.workspace_mib, calib_source=args.calib_dir,
                                  calib_frames=args.calib_frames, calib_topic=args.calib_topic,
                                  cuda_graph=args.cuda_graph, rebuild=args.rebuild, build_only=args.build_only)
    except (ConfigError, EngineError) as exc:
        print(f"stt-tensorrt: error: {exc}", file=sys.stderr)
        return 2
    print(f"stt-tensorrt: plan {backend.plan_path}")
    if args.build_only:
        return 0
    from stt_ros.runtime.segmenter import StreamingSegmenter

    seg = StreamingSegmenter(backend, output_size="network")
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (cfg.input_height, cfg.input_width, 3), dtype=np.uint8)
    times = [seg.process(frame).timings["network_ms"] for _ in range(args.frames)]
    steady = sorted(times[min(len(times) - 1, cfg.key_frames + 2):])
    median = steady[len(steady) // 2]
    print(f"stt-tensorrt: {cfg.model} {cfg.precision} {cfg.input_height}x{cfg.input_width}: median {median:.2f} ms "
          f"per step ({1e3 / median:.1f} fps) over {len(steady)} steps with a full buffer")
    return 0


if __name__ == "__main__":
    sys.exit(main())
