"""``create_backend``: the backend a config names. Each backend's module (and its library: torch,
onnxruntime, OpenVINO, TensorRT) is imported only when that backend is created.

``backend: auto`` is resolved here (:func:`resolve_auto`): TensorRT on an NVIDIA GPU (tensorrt and
cuda-python importable, a CUDA device, an exported graph to build from), else OpenVINO on the CPU
(openvino importable), else torch (onnxruntime where the weights are an exported graph only). The
config keeps ``auto``; the backend object says what runs (``backend.name``, ``backend.config``).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stt_ros.config import PRECISION_BACKENDS, ConfigError, STTConfig
from stt_ros.runtime.backend import Backend

if TYPE_CHECKING:
    from stt_ros.model.zoo import VideoSegModel

log = logging.getLogger(__name__)

BACKEND_NAMES = ("torch", "onnxruntime", "openvino", "tensorrt")


def module_available(name: str) -> bool:
    """Whether ``name`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def cuda_device_count() -> int:
    """CUDA devices cuda-python sees (0 without cuda-python, a driver or a GPU)."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            return 0
    try:
        err, count = cudart.cudaGetDeviceCount()
    except Exception:  # noqa: BLE001 (no driver: cuda-python raises or returns an error code)
        return 0
    return int(count) if int(err) == 0 else 0


def _has_graph(config: STTConfig) -> bool:
    """Whether TensorRT has an exported graph (or plan) to build from: weights name one, or an .onnx lies beside."""
    path = Path(config.weights) if config.weights else None
    return path is not None and (path.suffix in (".onnx", ".plan", ".engine") or path.with_suffix(".onnx").is_file())


def resolve_auto(config: STTConfig, with_model: bool = False) -> tuple[STTConfig, str]:
    """(config with the backend that ``backend=auto`` picks, why). ``with_model``: a torch model was given."""
    if with_model:
        return config.replace(backend="torch"), "a torch model was given"

    def runs_precision(name: str) -> bool:
        return config.precision in ("fp32", "auto") or name in PRECISION_BACKENDS[config.precision]

    weights = Path(config.weights) if config.weights else None
    skipped = []
    if not runs_precision("tensorrt"):
        skipped.append(f"tensorrt: no precision={config.precision}")
    elif not module_available("tensorrt"):
        skipped.append("tensorrt: not installed")
    elif cuda_device_count() == 0:
        skipped.append("tensorrt: no CUDA device")
    elif not _has_graph(config):
        skipped.append(f"tensorrt: weights={config.weights!r} is no exported graph and has no .onnx beside it")
    else:
        device = config.device if config.device.startswith("cuda") else "cuda"
        return config.replace(backend="tensorrt", device=device), f"tensorrt and an NVIDIA GPU ({device}) are present"
    if not runs_precision("openvino"):
        skipped.append(f"openvino: no precision={config.precision}")
    elif not module_available("openvino"):
        skipped.append("openvino: not installed")
    elif config.device != "cpu":
        skipped.append(f"openvino: runs on the CPU, not device={config.device}")
    elif weights is None:
        skipped.append("openvino: no weights to convert (random initialisation)")
    else:
        return config.replace(backend="openvino"), "; ".join(skipped + ["openvino is installed (CPU)"])
    if weights is not None and weights.suffix == ".onnx":
        if not runs_precision("onnxruntime") or not module_available("onnxruntime"):
            raise ConfigError(f"backend=auto: nothing runs {weights} with precision={config.precision} here "
                              f"({'; '.join(skipped)}); install openvino or onnxruntime")
        return config.replace(backend="onnxruntime"), "; ".join(skipped + ["the weights are an exported graph"])
    if not runs_precision("torch"):
        raise ConfigError(f"backend=auto: precision={config.precision} needs tensorrt or openvino, and neither runs "
                          f"here ({'; '.join(skipped)})")
    return config.replace(backend="torch"), "; ".join(skipped + ["torch runs anywhere"])


def create_backend(config: STTConfig, model: VideoSegModel | None = None, **options: Any) -> Backend:
    """The backend ``config.backend`` names (``auto``: see :func:`resolve_auto`).

    ``torch`` runs ``model`` (default: built from the config, weights from ``config.weights``).
    ``onnxruntime`` and ``tensorrt`` run the graph written by ``stt-export``: ``config.weights``
    names the .onnx file (or, for tensorrt, a built .plan), or a checkpoint with the .onnx beside
    it. ``openvino`` runs that graph too, or exports a checkpoint itself (cached). ``options`` go
    to the backend's constructor (see TorchBackend, OnnxRuntimeBackend, OpenVINOBackend, TensorRTBackend).
    """
    if config.backend == "auto":
        if options:
            raise ConfigError(f"backend=auto takes no options (they are one backend's), got {sorted(options)}")
        config, why = resolve_auto(config, model is not None)
        log.info("backend=auto: running %s (%s)", config.backend, why)
    if config.backend == "torch":
        if set(options) - {"batch_frames"}:
            raise ConfigError(f"backend=torch takes only batch_frames, got {sorted(options)}")
        from stt_ros.runtime.torch_backend import TorchBackend

        return TorchBackend(config, model, **options)
    if model is not None:
        raise ConfigError(f"backend={config.backend} runs an exported graph, not a torch model: export the model "
                          f"with stt-export and set weights to the .onnx file")
    if config.backend == "onnxruntime":
        from stt_ros.runtime.onnx_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(config, **options)
    if config.backend == "openvino":
        from stt_ros.runtime.openvino_backend import OpenVINOBackend

        return OpenVINOBackend(config, **options)
    if config.backend == "tensorrt":
        from stt_ros.runtime.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(config, **options)
    raise ConfigError(f"backend={config.backend!r} is not available; use {', '.join(BACKEND_NAMES)} or auto")
