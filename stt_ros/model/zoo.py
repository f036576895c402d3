"""Named models of the paper: STT variants and their per-frame baselines.

``build_model(cfg)`` turns an :class:`stt_ros.config.STTConfig` into a :class:`VideoSegModel`:
a per-frame network (BiSeNet or PSPNet) plus, for ``stt_*`` names, a Sparse Temporal Transformer
on its 1/8 feature map.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from stt_ros.model.base import SegNet, SegOutput, upsample
from stt_ros.model.bisenet import BiSeNet
from stt_ros.model.graph_contract import (
    CLASS_OUTPUT,
    IMAGE_INPUT,
    LOGITS_OUTPUT,
    MEMORY_OUTPUT,
    VALID_INPUT,
    memory_input_name,
)
from stt_ros.model.pspnet import PSPNet
from stt_ros.model.specs import MODEL_NAMES, MODEL_SPECS, ModelSpec
from stt_ros.model.stt import SparseTemporalTransformer

if TYPE_CHECKING:
    from stt_ros.config import STTConfig

__all__ = ["MODEL_NAMES", "MODEL_SPECS", "ModelSpec", "StreamingStepGraph", "VideoSegModel", "build_model",
           "build_segnet"]


class VideoSegModel(nn.Module):
    """A per-frame network with an optional temporal transformer between features and head.

    ``step`` is one streaming step (the runtime calls it with its ring buffer); ``forward_clip``
    runs a whole clip at once (training, evaluation, and the reference the streaming path must
    match); ``forward`` is a plain per-frame forward that ignores the temporal module.
    """

    def __init__(self, segnet: SegNet, stt: SparseTemporalTransformer | None, name: str = "") -> None:
        super().__init__()
        self.segnet = segnet
        self.stt = stt
        self.name = name

    @property
    def temporal(self) -> bool:
        return self.stt is not None

    @property
    def num_classes(self) -> int:
        return self.segnet.num_classes

    def forward(self, x: Tensor) -> SegOutput:
        return self.segnet(x)

    def step(self, image: Tensor, memory: Tensor | None, order: Sequence[int]) -> tuple[Tensor, Tensor | None]:
        """One streaming step.

        ``image`` (B, 3, H, W) normalised; ``memory`` (B, S, heads, H/8*W/8, 2*head_dim) holding
        past frames' keys/values, ``order`` their slot indices nearest first. Returns logits at
        input size and this frame's keys/values to push into the buffer (None for baselines).
        """
        feat, _ = self.segnet.features(image)
        if self.stt is None:
            return upsample(self.segnet.head(feat), image.shape[-2:]), None
        kv = self.stt.project_memory(feat)
        if memory is not None and len(order):
            feat = self.stt(feat, memory, order)
        return upsample(self.segnet.head(feat), image.shape[-2:]), kv

    def step_many(self, image: Tensor, memories: Sequence[Tensor | None], orders: Sequence[Sequence[int]]
                  ) -> tuple[Tensor, Tensor | None]:
        """:meth:`step` for B independent streams at once (cross-camera batching).

        ``image`` (B, 3, H, W): one frame of each stream; ``memories[b]`` (1, S, heads, H/8*W/8,
        2*head_dim) is stream b's own buffer and ``orders[b]`` its slots nearest first (empty or
        None memory: no past frames). The per-frame network runs as one batch; the temporal
        transformer runs per stream, against that stream's memory only. Returns logits (B, ...)
        and the B frames' keys/values (row b to push into stream b's buffer; None for baselines).
        """
        if len(memories) != image.shape[0] or len(orders) != image.shape[0]:
            raise ValueError(f"step_many: {image.shape[0]} images, {len(memories)} memories, {len(orders)} orders")
        feat, _ = self.segnet.features(image)
        if self.stt is None:
            return upsample(self.segnet.head(feat), image.shape[-2:]), None
        kv = self.stt.project_memory(feat)
        rows = [self.stt(feat[b:b + 1], memory, order) if memory is not None and len(order) else feat[b:b + 1]
                for b, (memory, order) in enumerate(zip(memories, orders, strict=True))]
        feat = torch.cat(rows) if len(rows) > 1 else rows[0]
        return upsample(self.segnet.head(feat), image.shape[-2:]), kv

    def step_frames(self, image: Tensor, frames: Sequence[Tensor], valid: Tensor | None,
                    query_chunk: int = 1024, layout: str = "portable") -> tuple[Tensor, Tensor | None]:
        """One streaming step in the static-shape (export) formulation, batch 1.

        ``frames``: T tensors (1, heads, H/8*W/8, 2*head_dim), nearest first; ``valid`` (T,) bool
        says which of them hold a frame (None: all). Equals :meth:`step` with the valid frames'
        slots as ``order``. Baselines ignore ``frames``/``valid``. ``layout``: the attention's
        :data:`~stt_ros.model.stt.EXPORT_LAYOUTS` entry (same values, another order of operations).
        """
        feat, _ = self.segnet.features(image)
        if self.stt is None:
            return upsample(self.segnet.head(feat), image.shape[-2:]), None
        if valid is None:
            valid = torch.ones(len(frames), dtype=torch.bool, device=image.device)
        kv = self.stt.project_memory(feat)
        feat = self.stt.forward_frames(feat, frames, valid, query_chunk, layout)
        return upsample(self.segnet.head(feat), image.shape[-2:]), kv

    def forward_clip(self, clip: Tensor, all_frames: bool = False, grad_prev: bool = False) -> SegOutput | Tensor:
        """Run a clip (B, N, 3, H, W), frames in time order.

        Frame i attends to frames i-1, i-2, ... (at most T), exactly as streaming would.
        ``all_frames=False``: SegOutput of the last frame (aux logits in train mode; semi-supervised
        training labels only that frame); previous frames run through the per-frame network
        without gradients unless ``grad_prev`` (their key/value projections always get them).
        ``all_frames=True``: logits of every frame, (B, N, classes, H, W).
        """
        b, n = clip.shape[:2]
        size = clip.shape[-2:]
        if not all_frames:
            prev = clip[:, :-1].flatten(0, 1)
            feat, aux = self.segnet.features(clip[:, -1])
            if self.stt is not None and n > 1:
                with torch.set_grad_enabled(grad_prev and torch.is_grad_enabled()):
                    prev_feat, _ = self.segnet.features(prev)
                memory = self.stt.project_memory(prev_feat)  # the key/value projections always learn
                memory = memory.view(b, n - 1, *memory.shape[1:])
                feat = self.stt(feat, memory, list(range(n - 2, -1, -1)))
            logits = upsample(self.segnet.head(feat), size)
            aux_out = [upsample(a, size) for a in self.segnet.aux_logits(aux)] if self.training else []
            return SegOutput(logits, aux_out)
        feats, _ = self.segnet.features(clip.flatten(0, 1))
        feats = feats.view(b, n, *feats.shape[1:])
        if self.stt is None:
            out = [self.segnet.head(feats[:, i]) for i in range(n)]
        else:
            kv = self.stt.project_memory(feats.flatten(0, 1))
            kv = kv.view(b, n, *kv.shape[1:])
            out = [self.segnet.head(self.stt(feats[:, i], kv, list(range(i - 1, -1, -1)))) for i in range(n)]
        return torch.stack([upsample(o, size) for o in out], 1)


def build_segnet(architecture: str, backbone: str, num_classes: int) -> SegNet:
    if architecture == "bisenet":
        return BiSeNet(num_classes, backbone)
    if architecture == "pspnet":
        return PSPNet(num_classes, backbone)
    raise ValueError(f"unknown architecture {architecture!r}; choose bisenet or pspnet")


def build_model(cfg: STTConfig) -> VideoSegModel:
    """Build the zoo model ``cfg.model`` with random weights (see ``stt_ros.weights`` to load)."""
    try:
        spec = MODEL_SPECS[cfg.model]
    except KeyError:
        raise ValueError(f"unknown model {cfg.model!r}; choose one of {', '.join(MODEL_NAMES)}") from None
    segnet = build_segnet(spec.architecture, spec.backbone, cfg.num_classes)
    stt = None
    if spec.temporal:
        stt = SparseTemporalTransformer(
            segnet.feat_channels, key_frames=cfg.key_frames, window_start=cfg.key_window_start,
            window_end=cfg.key_window_end, window_step=cfg.key_window_step, query_radius=cfg.query_radius,
            query_ratio=cfg.query_ratio, attn_dim=cfg.attn_dim, heads=cfg.attn_heads,
            query_tiles=cfg.query_tiles, affinity=cfg.attn_affinity)
    return VideoSegModel(segnet, stt, cfg.model)


# ---------------------------------------------------------------------------- exported streaming step
class StreamingStepGraph(nn.Module):
    """What ``stt-export`` traces: uint8 image + T buffered frames -> class map + this frame's memory
    (I/O names: :mod:`stt_ros.model.graph_contract`).

    Normalisation ``(x - 255 mean) / (255 std)`` and the class argmax happen inside, exactly as the
    torch backend does them, so a runtime only binds buffers. ``forward(image, *memory, valid)``
    for STT models, ``forward(image)`` for per-frame baselines; returns ``(class_map, new_memory
    [, logits])`` or ``(class_map [, logits])``.
    """

    def __init__(self, model: VideoSegModel, mean: Sequence[float], std: Sequence[float], with_logits: bool = False,
                 query_chunk: int = 1024, layout: str = "portable") -> None:
        super().__init__()
        self.model = model
        self.with_logits = with_logits
        self.query_chunk = query_chunk
        self.layout = layout
        m = torch.tensor(tuple(mean), dtype=torch.float32) * 255
        s = torch.tensor(tuple(std), dtype=torch.float32) * 255
        self.register_buffer("mean", m.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("inv_std", (1 / s).view(1, 3, 1, 1), persistent=False)

    def input_names(self) -> list[str]:
        if self.model.stt is None:
            return [IMAGE_INPUT]
        return [IMAGE_INPUT, *(memory_input_name(k) for k in range(self.model.stt.key_frames)), VALID_INPUT]

    def output_names(self) -> list[str]:
        names = [CLASS_OUTPUT] + ([MEMORY_OUTPUT] if self.model.stt is not None else [])
        return names + ([LOGITS_OUTPUT] if self.with_logits else [])

    def example_inputs(self, height: int, width: int) -> tuple[Tensor, ...]:
        """Zero inputs of the right shapes and dtypes (for tracing)."""
        image = torch.zeros(1, height, width, 3, dtype=torch.uint8)
        stt = self.model.stt
        if stt is None:
            return (image,)
        frame = torch.zeros(1, *stt.memory_shape(height // 8, width // 8))
        return (image, *[frame.clone() for _ in range(stt.key_frames)], torch.zeros(stt.key_frames, dtype=torch.bool))

    def forward(self, image: Tensor, *rest: Tensor) -> tuple[Tensor, ...]:
        x = (image.permute(0, 3, 1, 2).to(torch.float32) - self.mean) * self.inv_std
        if self.model.stt is None:
            logits, kv = self.model.step_frames(x, [], None)
        else:
            *frames, valid = rest
            logits, kv = self.model.step_frames(x, frames, valid, self.query_chunk, self.layout)
        out = [logits.argmax(1).to(torch.int32)] + ([kv] if kv is not None else [])
        return tuple(out + ([logits] if self.with_logits else []))
