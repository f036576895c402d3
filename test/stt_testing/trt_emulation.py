"""A CPU stand-in for the parts of the TensorRT 10 and cuda-python runtime APIs the TensorRT backend
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
        return "TensorRT is not installed (pip install tensorrt cuda-python on a GPU machine)"
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


def make_fake_tensorrt(cudart: FakeCudart, version: str = "10.0.0") -> Any:
    """A module-like namespace with the TensorRT names the backend uses."""
    import onnxruntime as ort

    trt = SimpleNamespace(__version__=version, builds=[], calibrated=[])

    class Logger:
        WARNING = 2

        def __init__(self, severity: int = 2) -> None:
            pass

    class TensorIOMode(enum.Enum):
        INPUT = 1
        OUTPUT = 2

    class IInt8EntropyCalibrator2:
        def __init__(self) -> None:
            pass

    class Network:
        def __init__(self) -> None:
            self.onnx = b""

    class OnnxParser:
        def __init__(self, network: Network, logger: Logger) -> None:
            self.network, self.num_errors = network, 0

        def parse(self, data: bytes, path: str | None = None) -> bool:
            self.network.onnx = data
            return True

    class BuilderConfig:
        def __init__(self) -> None:
            self.flags, self.int8_calibrator, self.pools = set(), None, {}

        def set_memory_pool_limit(self, pool: str, nbytes: int) -> None:
            self.pools[pool] = nbytes

        def set_flag(self, flag: str) -> None:
            self.flags.add(flag)

    class Builder:
        def __init__(self, logger: Logger) -> None:
            pass

        def create_network(self, flags: int) -> Network:
            return Network()

        def create_builder_config(self) -> BuilderConfig:
            return BuilderConfig()

        def build_serialized_network(self, network: Network, config: BuilderConfig) -> bytes:
            calib = config.int8_calibrator
            if calib is not None and calib.read_calibration_cache() is None:
                names = [i.name for i in ort.InferenceSession(network.onnx).get_inputs()]
                n = 0
                while calib.get_batch(names) is not None:
                    n += 1
                calib.write_calibration_cache(b"calibration table")
                trt.calibrated.append(n)
            trt.builds.append(sorted(config.flags))
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
                     "tensor(int32)": np.int32}
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

    trt.Logger, trt.TensorIOMode, trt.IInt8EntropyCalibrator2 = Logger, TensorIOMode, IInt8EntropyCalibrator2
    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, OnnxParser, Runtime
    trt.BuilderFlag = SimpleNamespace(FP16="FP16", INT8="INT8")
    trt.MemoryPoolType = SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.nptype = lambda dtype: dtype
    return trt
