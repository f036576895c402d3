"""A CPU stand-in for the parts of the TensorRT 10/11 and cuda-python runtime APIs the TensorRT backend
calls, so its Python code (cache, build flow, calibrator, bindings, slot rotation, CUDA-graph
keying) runs on machines without a GPU. It is not TensorRT: the "engine" is the ONNX graph run by
onnxruntime, "device memory" is host memory, streams run synchronously, and a captured "CUDA
graph" records the executions with the tensor addresses they had and replays exactly those.
The real end-to-end tests (test_tensorrt_engine_matches_torch_and_caches, the shared backend tests'
TestTensorRTOnGPU) run on a GPU; :func:`tensorrt_gpu_skip_reason` says why they cannot here.
"""

from __future__ import annotations

import ctypes
import enum
import importlib.util
from types import SimpleNamespace
from typing import Any

import numpy as np

OK = 0


def tensorrt_gpu_skip_reason() -> str | None:
    """Why the real TensorRT backend cannot run on this machine (None: it can)."""
    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed (pip install 'tensorrt>=10,<12' cuda-python on a GPU machine)"
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            return "cuda-python is not installed"
    err, count = cudart.cudaGetDeviceCount()
    if int(getattr(err, "value", err)) != 0 or count == 0:
        return "no NVIDIA GPU on this machine"
    return None


class _Err(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorNoDevice = 100


class FakeCudart:
    """cuda-python ``runtime`` calls used by the backend; results are (err, *values) tuples."""

    cudaMemcpyKind = SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)
    cudaStreamCaptureMode = SimpleNamespace(cudaStreamCaptureModeThreadLocal=1)

    def __init__(self, devices: int = 1) -> None:
        self.devices = devices
        self.buffers: dict[int, Any] = {}
        self.capturing: dict[int, list] = {}
        self.graphs: dict[int, list] = {}
        self.launches = 0
        self.mallocs = 0
        self._next = 1

    def _alloc(self, nbytes: int) -> int:
        buf = (ctypes.c_byte * max(nbytes, 1))()
        ptr = ctypes.addressof(buf)
        self.buffers[ptr] = buf
        return ptr

    def cudaGetDeviceCount(self):
        return (_Err.cudaSuccess, self.devices) if self.devices else (_Err.cudaErrorNoDevice, 0)

    def cudaGetDeviceProperties(self, device: int):
        return _Err.cudaSuccess, SimpleNamespace(name=b"Emulated GPU\x00", major=8, minor=6)

    def cudaSetDevice(self, device: int):
        return (_Err.cudaSuccess,)

    def cudaMalloc(self, nbytes: int):
        self.mallocs += 1
        return _Err.cudaSuccess, self._alloc(nbytes)

    def cudaMallocHost(self, nbytes: int):
        return _Err.cudaSuccess, self._alloc(nbytes)

    def cudaMemset(self, ptr: int, value: int, nbytes: int):
        ctypes.memset(ptr, value, nbytes)
        return (_Err.cudaSuccess,)

    def cudaFree(self, ptr: int):
        self.buffers.pop(ptr, None)
        return (_Err.cudaSuccess,)

    cudaFreeHost = cudaFree

    def cudaMemcpy(self, dst: int, src: int, nbytes: int, kind: int):
        ctypes.memmove(dst, src, nbytes)
        return (_Err.cudaSuccess,)

    def cudaMemcpyAsync(self, dst: int, src: int, nbytes: int, kind: int, stream: int):
        return self.cudaMemcpy(dst, src, nbytes, kind)

    def cudaStreamCreate(self):
        self._next += 1
        return _Err.cudaSuccess, self._next

    def cudaStreamSynchronize(self, stream: int):
        return (_Err.cudaSuccess,)

    def cudaStreamDestroy(self, stream: int):
        return (_Err.cudaSuccess,)

    def cudaStreamBeginCapture(self, stream: int, mode: int):
        self.capturing[stream] = []
        return (_Err.cudaSuccess,)

    def cudaStreamEndCapture(self, stream: int):
        self._next += 1
        self.graphs[self._next] = self.capturing.pop(stream)
        return _Err.cudaSuccess, self._next

    def cudaGraphInstantiate(self, graph: int, flags: int):
        return _Err.cudaSuccess, graph

    def cudaGraphDestroy(self, graph: int):
        return (_Err.cudaSuccess,)

    def cudaGraphExecDestroy(self, graph: int):
        return (_Err.cudaSuccess,)

    def cudaGraphLaunch(self, graph: int, stream: int):
        self.launches += 1
        for context, addresses in self.graphs[graph]:
            context.run(addresses)
        return (_Err.cudaSuccess,)


#: what each emulated TensorRT major has and lacks (checked against the real bindings of 10.16.1.11 and
#: 11.4.0.106 by test/deploy/test_tensorrt_api.py): 11 removed the precision builder flags, implicit int8
#: calibration (IBuilderConfig.int8_calibrator, the IInt8*Calibrator classes) and QuantizationFlag.
REMOVED_IN_11 = ("BuilderFlag.FP16", "BuilderFlag.INT8", "IBuilderConfig.int8_calibrator", "IInt8EntropyCalibrator2",
                 "QuantizationFlag")


def make_fake_tensorrt(cudart: FakeCudart, version: str = "10.0.0") -> Any:
    """A module-like namespace with the TensorRT names the backend uses, as TensorRT ``version``'s
    major (10 or 11) has them: a name that major lacks is absent (AttributeError), as it is there."""
    import onnxruntime as ort

    major = int(version.split(".")[0])
    trt = SimpleNamespace(__version__=version, builds=[], timing_caches=[])

    class Logger:
        WARNING = 2

        def __init__(self, severity: int = 2) -> None:
            pass

    class TensorIOMode(enum.Enum):
        INPUT = 1
        OUTPUT = 2

    class NetworkDefinitionCreationFlag(enum.IntEnum):
        STRONGLY_TYPED = 1  # also EXPLICIT_BATCH (0) in 10, ignored; 11 dropped it

    class Network:
        def __init__(self, flags: int) -> None:
            self.onnx, self.flags = b"", flags

    class OnnxParser:
        def __init__(self, network: Network, logger: Logger) -> None:
            self.network, self.num_errors = network, 0

        def parse(self, data: bytes, path: str | None = None) -> bool:
            self.network.onnx = data
            return True

    class TimingCache:
        def __init__(self, data: bytes) -> None:
            self.data = bytes(data)

        def serialize(self) -> memoryview:  # IHostMemory: a buffer
            return memoryview(self.data)

    class BuilderConfig:
        # only the attributes the real IBuilderConfig of this major has: setting another one fails
        __slots__ = ("flags", "pools", "timing_cache") + (("int8_calibrator",) if major < 11 else ())

        def __init__(self) -> None:
            self.flags, self.pools, self.timing_cache = set(), {}, None
            if major < 11:
                self.int8_calibrator = None

        def set_memory_pool_limit(self, pool: str, nbytes: int) -> None:
            self.pools[pool] = nbytes

        def set_flag(self, flag: str) -> None:
            self.flags.add(flag)

        def create_timing_cache(self, serialized: bytes) -> TimingCache:
            return TimingCache(serialized)

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
            self.timing_cache = cache
            return True

        def get_timing_cache(self) -> TimingCache:
            return self.timing_cache

    class Builder:
        def __init__(self, logger: Logger) -> None:
            pass

        def create_network(self, flags: int) -> Network:
            return Network(flags)

        def create_builder_config(self) -> BuilderConfig:
            return BuilderConfig()

        def build_serialized_network(self, network: Network, config: BuilderConfig) -> bytes:
            import onnx

            from stt_ros.runtime.tensorrt_precision import graph_precision

            typed = bool(network.flags & (1 << int(NetworkDefinitionCreationFlag.STRONGLY_TYPED)))
            if typed and config.flags & {"FP16", "INT8", "BF16"}:
                return None  # TensorRT: precision flags are an error on a strongly typed network
            if major < 11 and config.int8_calibrator is not None:
                raise AssertionError("the emulation does not run implicit (calibrator) int8; use Q/DQ")
            cache = config.timing_cache
            trt.timing_caches.append(None if cache is None else cache.data)
            if cache is not None:
                cache.data = cache.data + b"timed;"  # the build adds its measurements
            trt.builds.append({"strongly_typed": typed, "flags": sorted(config.flags),
                               "graph": graph_precision(onnx.load_from_string(network.onnx))})
            return version.encode() + b"|" + network.onnx  # the "plan": version tag + graph

    class Context:
        def __init__(self, engine: Engine) -> None:
            self.engine, self.addresses = engine, {}

        def set_tensor_address(self, name: str, ptr: int) -> bool:
            self.addresses[name] = ptr
            return True

        def execute_async_v3(self, stream: int) -> bool:
            if stream in cudart.capturing:
                cudart.capturing[stream].append((self, dict(self.addresses)))
            else:
                self.run(self.addresses)
            return True

        def run(self, addresses: dict[str, int]) -> None:
            sess, io = self.engine.session, self.engine.io
            feeds = {}
            for i in sess.get_inputs():
                shape, dtype, _ = io[i.name]
                feeds[i.name] = np.ctypeslib.as_array((ctypes.c_byte * (int(np.prod(shape)) * dtype.itemsize))
                                                      .from_address(addresses[i.name])).view(dtype).reshape(shape).copy()
            names = [o.name for o in sess.get_outputs() if o.name in addresses]
            for name, value in zip(names, sess.run(names, feeds), strict=True):
                ctypes.memmove(addresses[name], np.ascontiguousarray(value).ctypes.data, value.nbytes)

    class Engine:
        def __init__(self, onnx: bytes) -> None:
            self.session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
            types = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
                     "tensor(int32)": np.int32, "tensor(float16)": np.float16}
            self.io = {v.name: (tuple(v.shape), np.dtype(types[v.type]), mode)
                       for vals, mode in ((self.session.get_inputs(), TensorIOMode.INPUT),
                                          (self.session.get_outputs(), TensorIOMode.OUTPUT)) for v in vals}
            self.names = list(self.io)
            self.num_io_tensors = len(self.names)

        def get_tensor_name(self, i: int) -> str:
            return self.names[i]

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return self.io[name][0]

        def get_tensor_dtype(self, name: str) -> np.dtype:
            return self.io[name][1]

        def get_tensor_mode(self, name: str) -> TensorIOMode:
            return self.io[name][2]

        def create_execution_context(self) -> Context:
            return Context(self)

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            pass

        def deserialize_cuda_engine(self, plan: bytes) -> Engine | None:
            tag, _, onnx = plan.partition(b"|")
            return Engine(onnx) if tag.decode() == version else None  # plans do not cross versions

    trt.Logger, trt.TensorIOMode = Logger, TensorIOMode
    trt.NetworkDefinitionCreationFlag = NetworkDefinitionCreationFlag
    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, OnnxParser, Runtime
    trt.IBuilderConfig, trt.ITimingCache = BuilderConfig, TimingCache
    trt.BuilderFlag = SimpleNamespace(TF32="TF32", BF16="BF16")
    trt.MemoryPoolType = SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.nptype = lambda dtype: dtype
    if major < 11:  # deprecated in 10 (FP16/INT8 flags since 10.12, calibrators since 10.1), removed in 11
        class IInt8EntropyCalibrator2:
            def __init__(self) -> None:
                pass

        trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
        trt.BuilderFlag.FP16, trt.BuilderFlag.INT8 = "FP16", "INT8"
        trt.QuantizationFlag = SimpleNamespace(CALIBRATE_BEFORE_FUSION="CALIBRATE_BEFORE_FUSION")
    return trt
