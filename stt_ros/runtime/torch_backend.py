"""torch backend: the zoo model on ``config.device``, its ring buffer a preallocated tensor there.

Precisions: fp32; fp16 (CUDA only: the model in half precision); bf16 (autocast to bfloat16 and
channels_last activations: oneDNN's bf16 kernels on a CPU with AVX512-BF16 or AMX; on CUDA where
the GPU supports it); auto = bf16 on a CPU that has AVX512-BF16 or AMX, fp32 elsewhere (logged).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from stt_ros.config import ConfigError, STTConfig
from stt_ros.model.zoo import VideoSegModel, build_model
from stt_ros.runtime.backend import Backend, BackendOutput, NoMemory, StreamState
from stt_ros.runtime.ring_buffer import RingBuffer

log = logging.getLogger(__name__)

#: /proc/cpuinfo flags that give oneDNN native bf16 kernels, and how errors name them
BF16_CPU_FLAGS = {"amx_bf16": "AMX-BF16", "avx512_bf16": "AVX512-BF16"}


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_bf16_feature() -> str | None:
    """The CPU feature that gives torch fast bf16 (AMX-BF16 or AVX512-BF16), None without one.
    Asks torch (``torch.cpu._is_amx_tile_supported`` / ``_is_avx512_bf16_supported``, private but
    present since torch 2.1) and falls back to /proc/cpuinfo."""
    checks = (("_is_amx_tile_supported", "AMX-BF16"), ("_is_avx512_bf16_supported", "AVX512-BF16"))
    asked = False
    for fn, name in checks:
        probe = getattr(torch.cpu, fn, None)
        if probe is not None:
            asked = True
            if probe():
                return name
    if asked:
        return None
    flags = cpu_flags()
    return next((name for flag, name in BF16_CPU_FLAGS.items() if flag in flags), None)


def resolve_precision(requested: str, device: torch.device) -> tuple[str, str]:
    """(precision the torch backend runs, why) for ``requested`` on ``device``."""
    if requested == "auto":
        if device.type != "cpu":
            return "fp32", f"precision=auto: fp32 on {device} (bf16 is chosen automatically on CPUs only)"
        feature = cpu_bf16_feature()
        if feature:
            return "bf16", f"precision=auto: the CPU has {feature}, running bf16 autocast"
        return "fp32", "precision=auto: the CPU has neither AVX512-BF16 nor AMX-BF16, running fp32"
    if requested == "fp16" and device.type != "cuda":
        raise ConfigError("precision=fp16 with the torch backend needs a CUDA device; on the CPU use bf16 "
                          "(AVX512-BF16 or AMX) or fp32")
    if requested == "bf16":
        if device.type == "cpu" and cpu_bf16_feature() is None:
            raise ConfigError("precision=bf16 with the torch backend needs a CPU with AVX512-BF16 or AMX-BF16; this "
                              "CPU has neither (its flags lack avx512_bf16 and amx_bf16). Use precision=fp32 (or "
                              "auto, which falls back to fp32)")
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError(f"precision=bf16: {device} does not support bfloat16; use fp16")
    if requested == "int8":
        raise ConfigError("precision=int8 needs backend=tensorrt or backend=openvino")
    return requested, f"precision={requested} as configured"


#: On a CPU, the most input pixels torch's infer_many runs as one batch (more frames go in several
#: batches): bigger batches ran slower per frame than one frame at a time, as their activations leave the
#: caches. 4 cameras of STT-BiSe18 on 2 cores (AVX512-BF16 EPYC, fp32 / bf16), throughput batched /
#: one at a time: 4 x 128x256 1.30x / 1.30x, 2 x 256x512 1.07x / 1.11x, 4 x 256x512 0.88x / 1.04x,
#: 4 x 512x1024 0.74x / 0.66x (0.93x / 0.95x on an AMX Xeon). So 512x1024 cameras go one after the
#: other (bit-identical to a camera stepped alone), 256x512 two at a time, 128x256 eight.
CPU_BATCH_PIXELS = 1 << 18


class TorchBackend(Backend):
    """PyTorch on ``config.device``; normalisation, network, temporal transformer and argmax all
    run there, the ring buffer is a preallocated tensor on the same device."""

    name = "torch"

    def __init__(self, config: STTConfig, model: VideoSegModel | None = None, batch_frames: int | None = None) -> None:
        """``batch_frames``: the most frames :meth:`infer_many` runs as one batch through the network (1:
        one after the other, 0: all); None = all on a GPU, and on a CPU as many as fit
        :data:`CPU_BATCH_PIXELS`."""
        super().__init__(config)
        try:
            self.device = torch.device(config.device)
        except RuntimeError as exc:
            raise ConfigError(f"device={config.device!r} is not a torch device: {exc}") from exc
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device={config.device!r} but CUDA is not available; use device=cpu")
        if batch_frames is None:
            pixels = config.input_height * config.input_width
            batch_frames = 0 if self.device.type == "cuda" else max(1, CPU_BATCH_PIXELS // pixels)
        if batch_frames < 0:
            raise ConfigError(f"batch_frames={batch_frames}: 0 (no limit) or more")
        self.batch_frames = batch_frames
        self.batching = "sequential" if batch_frames == 1 else "batched"
        self.precision, why = resolve_precision(config.precision, self.device)
        if config.precision == "auto":
            log.info("torch: %s", why)
        if model is None:
            model = build_model(config)
            if config.weights:
                from stt_ros.weights import load_weights

                load_weights(model, config.weights, config=config.to_dict())
        self.dtype = torch.float16 if self.precision == "fp16" else torch.float32
        self.model = model.to(self.device, self.dtype).eval()
        #: bf16: autocast (weights stay fp32, oneDNN casts per op) on channels_last activations
        self.bf16 = self.precision == "bf16"
        if self.bf16:
            self.model = self.model.to(memory_format=torch.channels_last)
        mean = torch.tensor(config.mean, device=self.device, dtype=self.dtype) * 255
        std = torch.tensor(config.std, device=self.device, dtype=self.dtype) * 255
        self._mean, self._inv_std = mean.view(1, 3, 1, 1), (1 / std).view(1, 3, 1, 1)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, 3) RGB on any device -> normalised (B, 3, H, W) on the model's device."""
        x = images.to(self.device, non_blocking=True).permute(0, 3, 1, 2).to(self.dtype)
        x = (x - self._mean) * self._inv_std
        return x.contiguous(memory_format=torch.channels_last) if self.bf16 else x

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on the model's device (precision bf16), else nothing."""
        if self.bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

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
        with torch.inference_mode(), self.autocast():
            x = self.normalize(torch.from_numpy(image)[None])
            if isinstance(state, RingBuffer):
                logits, kv = self.model.step(x, state.storage, state.order())
                state.push(kv)
            else:
                logits, _ = self.model.step(x, None, [])
            logits = logits.float()
            class_map = logits.argmax(1)[0].to(torch.uint8).cpu().numpy()
            out_logits = logits[0].float().cpu().numpy() if return_logits else None
        self._sync()
        return BackendOutput(class_map, out_logits, {"network_ms": (time.perf_counter() - t0) * 1e3})

    def infer_many(self, images: Sequence[np.ndarray], states: Sequence[StreamState],
                   return_logits: bool = False) -> list[BackendOutput]:
        """The streams' frames in batches of up to :attr:`batch_frames` through the per-frame network, the
        temporal transformer attending per stream to that stream's ring buffer only
        (:meth:`VideoSegModel.step_many`); a batch of one is :meth:`infer`."""
        self.check_many(images, states, return_logits)
        size = self.batch_frames or len(images)
        t0 = time.perf_counter()
        outs: list[BackendOutput] = []
        for i in range(0, len(images), size):
            batch, batch_states = images[i:i + size], states[i:i + size]
            if len(batch) == 1:
                outs.append(self.infer(batch[0], batch_states[0], return_logits))
            else:
                outs += self._batch(batch, batch_states, return_logits)
        ms = (time.perf_counter() - t0) * 1e3
        return [BackendOutput(o.class_map, o.logits, {"network_ms": ms}) for o in outs]

    def _batch(self, images: Sequence[np.ndarray], states: Sequence[StreamState],
               return_logits: bool) -> list[BackendOutput]:
        rings = [s if isinstance(s, RingBuffer) else None for s in states]
        with torch.inference_mode(), self.autocast():
            x = self.normalize(torch.from_numpy(np.stack(images)))  # a copy: writable whatever the inputs
            logits, kv = self.model.step_many(x, [r.storage if r else None for r in rings],
                                              [r.order() if r else [] for r in rings])
            if kv is not None:
                for b, ring in enumerate(rings):
                    if ring is not None:
                        ring.push(kv[b])
            logits = logits.float()
            class_maps = logits.argmax(1).to(torch.uint8).cpu().numpy()
            out_logits = logits.cpu().numpy() if return_logits else None
        self._sync()
        return [BackendOutput(class_maps[b], None if out_logits is None else out_logits[b], {})
                for b in range(len(images))]
