"""``create_backend``: the backend a config names. Each backend's module (and its library: torch,
onnxruntime, TensorRT) is imported only when that backend is created."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stt_ros.config import ConfigError, STTConfig
from stt_ros.runtime.backend import Backend

if TYPE_CHECKING:
    from stt_ros.model.zoo import VideoSegModel


def create_backend(config: STTConfig, model: VideoSegModel | None = None, **options: Any) -> Backend:
    """The backend ``config.backend`` names.

    ``torch`` runs ``model`` (default: built from the config, weights from ``config.weights``).
    ``onnxruntime`` and ``tensorrt`` run the graph written by ``stt-export``: ``config.weights``
    names the .onnx file (or, for tensorrt, a built .plan), or a checkpoint with the .onnx beside
    it. ``options`` go to the backend's constructor (see OnnxRuntimeBackend, TensorRTBackend).
    """
    if config.backend == "torch":
        if options:
            raise ConfigError(f"backend=torch takes no options, got {sorted(options)}")
        from stt_ros.runtime.torch_backend import TorchBackend

        return TorchBackend(config, model)
    if model is not None:
        raise ConfigError(f"backend={config.backend} runs an exported graph, not a torch model: export the model "
                          f"with stt-export and set weights to the .onnx file")
    if config.backend == "onnxruntime":
        from stt_ros.runtime.onnx_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(config, **options)
    if config.backend == "tensorrt":
        from stt_ros.runtime.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(config, **options)
    raise ConfigError(f"backend={config.backend!r} is not available; use torch, onnxruntime or tensorrt")
