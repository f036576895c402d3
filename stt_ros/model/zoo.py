"""Named models of the paper: STT variants and their per-frame baselines.

``build_model(cfg)`` turns an :class:`stt_ros.config.STTConfig` into a :class:`VideoSegModel`:
a per-frame network (BiSeNet or PSPNet) plus, for ``stt_*`` names, a Sparse Temporal Transformer
on its 1/8 feature map.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor, nn

from stt_ros.model.base import SegNet, SegOutput, upsample
from stt_ros.model.bisenet import BiSeNet
from stt_ros.model.pspnet import PSPNet
from stt_ros.model.stt import SparseTemporalTransformer

if TYPE_CHECKING:
    from stt_ros.config import STTConfig


class ModelSpec(NamedTuple):
    architecture: str  # "bisenet" | "pspnet"
    backbone: str  # "resnet18" ...
    temporal: bool  # with a Sparse Temporal Transformer


MODEL_SPECS: dict[str, ModelSpec] = {
    "stt_bise18": ModelSpec("bisenet", "resnet18", True),
    "stt_bise34": ModelSpec("bisenet", "resnet34", True),
    "stt_psp18": ModelSpec("pspnet", "resnet18", True),
    "stt_psp101": ModelSpec("pspnet", "resnet101", True),
    "bise18": ModelSpec("bisenet", "resnet18", False),
    "bise34": ModelSpec("bisenet", "resnet34", False),
    "psp18": ModelSpec("pspnet", "resnet18", False),
    "psp50": ModelSpec("pspnet", "resnet50", False),
    "psp101": ModelSpec("pspnet", "resnet101", False),
}
MODEL_NAMES: tuple[str, ...] = tuple(MODEL_SPECS)


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
            memory = self.stt.project_memory(feats.flatten(0, 1))
            memory = memory.view(b, n, *memory.shape[1:])
            out = [self.segnet.head(self.stt(feats[:, i], memory, list(range(i - 1, -1, -1)))) for i in range(n)]
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
            query_bands=cfg.query_tiles)
    return VideoSegModel(segnet, stt, cfg.model)
