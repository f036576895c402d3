"""The TensorRT and cuda-python imports, and the few CUDA runtime calls the TensorRT backend makes.

TensorRT (``pip install tensorrt``, >= 10) and cuda-python are imported here only, when a
TensorRT backend is created, so every other backend works without them; a missing or too old
package is a :class:`~stt_ros.config.ConfigError` saying what to install.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from stt_ros.config import ConfigError

INSTALL_HINT = ("`pip install tensorrt cuda-python` (TensorRT >= 10 and cuda-python for your CUDA major version, "
                "e.g. `pip install tensorrt-cu12 'cuda-python>=12,<13'`) on a machine with an NVIDIA GPU and driver")


class EngineError(RuntimeError):
    """A TensorRT engine could not be built, loaded or run; the message says why and what to do."""


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


def check(result: Any, what: str) -> Any:
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
    prop = check(cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
    return name.strip("\x00 "), f"{prop.major}.{prop.minor}"


class PinnedArray:
    """A numpy view of page-locked host memory (fast, truly asynchronous copies)."""

    def __init__(self, cudart: Any, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.cudart = cudart
        self.nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        self.ptr = check(cudart.cudaMallocHost(self.nbytes), "cudaMallocHost")
        buf = (ctypes.c_byte * self.nbytes).from_address(self.ptr)
        self.array = np.frombuffer(buf, dtype=dtype).reshape(shape)

    def __del__(self) -> None:
        if getattr(self, "ptr", None):
            self.cudart.cudaFreeHost(self.ptr)


class DeviceBuffer:
    """``nbytes`` of device memory (zeroed on request), freed with the object."""

    def __init__(self, cudart: Any, nbytes: int, zero: bool = False) -> None:
        self.cudart = cudart
        self.nbytes = nbytes
        self.ptr = check(cudart.cudaMalloc(nbytes), "cudaMalloc")
        if zero:
            check(cudart.cudaMemset(self.ptr, 0, nbytes), "cudaMemset")

    def __del__(self) -> None:
        if getattr(self, "ptr", None):
            self.cudart.cudaFree(self.ptr)
