"""torch backend: the zoo model on ``config.device``, its ring buffer a preallocated tensor there."""

from __future__ import annotations

import time

import numpy as np
import torch

from stt_ros.config import ConfigError, STTConfig
from stt_ros.model.zoo import VideoSegModel, build_model
from stt_ros.runtime.backend import Backend, BackendOutput, NoMemory, StreamState
from stt_ros.runtime.ring_buffer import RingBuffer


class TorchBackend(Backend):
    """PyTorch on ``config.device``; normalisation, network, temporal transformer and argmax all
    run there, the ring buffer is a preallocated tensor on the same device."""

    name = "torch"

    def __init__(self, config: STTConfig, model: VideoSegModel | None = None) -> None:
        super().__init__(config)
        try:
            self.device = torch.device(config.device)
        except RuntimeError as exc:
            raise ConfigError(f"device={config.device!r} is not a torch device: {exc}") from exc
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device={config.device!r} but CUDA is not available; use device=cpu")
        if config.precision == "fp16" and self.device.type != "cuda":
            raise ConfigError("precision=fp16 with the torch backend needs a CUDA device")
        if model is None:
            model = build_model(config)
            if config.weights:
                from stt_ros.weights import load_weights

                load_weights(model, config.weights, config=config.to_dict())
        self.dtype = torch.float16 if config.precision == "fp16" else torch.float32
        self.model = model.to(self.device, self.dtype).eval()
        mean = torch.tensor(config.mean, device=self.device, dtype=self.dtype) * 255
        std = torch.tensor(config.std, device=self.device, dtype=self.dtype) * 255
        self._mean, self._inv_std = mean.view(1, 3, 1, 1), (1 / std).view(1, 3, 1, 1)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, 3) RGB on any device -> normalised (B, 3, H, W) on the model's device."""
        x = images.to(self.device, non_blocking=True).permute(0, 3, 1, 2).to(self.dtype)
        return (x - self._mean) * self._inv_std

    def create_state(self) -> StreamState:
        stt = self.model.stt
        if stt is None:
            return NoMemory()
        h, w = self.config.input_height // 8, self.config.input_width // 8
        return RingBuffer(stt.key_frames, stt.memory_shape(h, w), self.device, self.dtype)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def infer(self, image: np.ndarray, state: StreamState, return_logits: bool = False) -> BackendOutput:
        self.check_input(image, return_logits)
        if not image.flags.writeable:  # e.g. a view of a bag's message bytes; torch wants writable memory
            image = image.copy()
        t0 = time.perf_counter()
        with torch.inference_mode():
            x = self.normalize(torch.from_numpy(image)[None])
            if isinstance(state, RingBuffer):
                logits, kv = self.model.step(x, state.storage, state.order())
                state.push(kv)
            else:
                logits, _ = self.model.step(x, None, [])
            class_map = logits.argmax(1)[0].to(torch.uint8).cpu().numpy()
            out_logits = logits[0].float().cpu().numpy() if return_logits else None
        self._sync()
        return BackendOutput(class_map, out_logits, {"network_ms": (time.perf_counter() - t0) * 1e3})
