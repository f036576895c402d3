"""The TensorRT and cuda-python imports, and the few CUDA runtime calls the TensorRT backend makes.

TensorRT 10.x or 11.x (``pip install 'tensorrt>=10,<12'``) and cuda-python are imported here only, when a
TensorRT backend is created, so every other backend works without them; a missing package, a missing
library of it (named) or an unsupported version is a :class:`~stt_ros.config.ConfigError` saying what to install.
"""

from __future__ import annotations

import ctypes
import re
from typing import Any

import numpy as np

from stt_ros.config import ConfigError

#: TensorRT majors this backend is written and API-checked against (test/deploy/test_tensorrt_api.py).
SUPPORTED_MAJORS = (10, 11)
SUPPORTED = "TensorRT 10.x or 11.x (setup.cfg: tensorrt>=10,<12)"
INSTALL_HINT = ("`pip install 'tensorrt>=10,<12' cuda-python` (TensorRT 11 with CUDA 13: `pip install tensorrt-cu13 "
                "'cuda-python>=13,<14'`; TensorRT 10 with CUDA 12: `pip install 'tensorrt-cu12>=10,<11' "
                "'cuda-python>=12,<13'`) on a machine with an NVIDIA GPU and driver")
_MISSING_LIB = re.compile(r"(lib[\w.+-]+\.so(?:\.[\w.]+)?)")


class EngineError(RuntimeError):
    """A TensorRT engine could not be built, loaded or run; the message says why and what to do."""


def missing_library(exc: BaseException) -> str | None:
    """The shared library an ImportError/OSError says it cannot open (``libnvonnxparser.so.11``), if any."""
    text = str(exc)
    if "cannot open shared object" not in text and "No such file" not in text and "undefined symbol" not in text:
        return None
    found = _MISSING_LIB.search(text)
    return found.group(1) if found else None


def import_error_message(exc: BaseException, package: str = "tensorrt") -> str:
    """What a failed ``import tensorrt`` means: the package is missing, or it is installed but one of
    its libraries is not (the NVIDIA libraries come from another wheel or the TensorRT tar/deb)."""
    lib = missing_library(exc)
    if lib is not None:
        return (f"backend=tensorrt: TensorRT's Python package is installed but its library {lib} cannot be loaded "
                f"({exc}); install the TensorRT libraries of the same version (the tensorrt-cu12/-cu13 wheel pulls "
                f"them in as tensorrt-cu12-libs/tensorrt-cu13-libs; a tar/deb install: put its lib directory on "
                f"LD_LIBRARY_PATH). Supported: {SUPPORTED}")
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == package:
        return f"backend=tensorrt needs TensorRT's Python package, which is not installed: {INSTALL_HINT}"
    return f"backend=tensorrt: `import {package}` failed: {exc}. Supported: {SUPPORTED}; {INSTALL_HINT}"


def check_version(version: str) -> None:
    """ConfigError unless ``version`` is a TensorRT major this backend supports."""
    try:
        major = int(str(version).split(".")[0])
    except ValueError:
        raise ConfigError(f"backend=tensorrt: cannot read TensorRT's version {version!r}; supported: {SUPPORTED}"
                          ) from None
    if major not in SUPPORTED_MAJORS:
        newer = " (newer than this stt_ros knows; its API may have changed)" if major > SUPPORTED_MAJORS[-1] else ""
        raise ConfigError(f"backend=tensorrt: TensorRT {version} is installed{newer}; supported: {SUPPORTED}. "
                          f"{INSTALL_HINT}")


def import_tensorrt() -> tuple[Any, Any]:
    """(tensorrt, cuda runtime bindings) or a ConfigError saying exactly what is wrong and what to install."""
    try:
        import tensorrt as trt
    except (ImportError, OSError) as exc:
        raise ConfigError(import_error_message(exc)) from exc
    check_version(trt.__version__)
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6 (12.9 and 13.x: same calls)
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError as exc:
            lib = missing_library(exc)
            what = f"cuda-python cannot load {lib} ({exc})" if lib else "cuda-python, which is not installed"
            raise ConfigError(f"backend=tensorrt needs {what}: {INSTALL_HINT}") from exc
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
