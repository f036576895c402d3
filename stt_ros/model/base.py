"""The interface every per-frame segmentation network implements.

A per-frame network splits into ``features`` (image -> 1/8 feature map, plus whatever its
auxiliary heads need) and ``head`` (1/8 feature map -> 1/8 logits), so the Sparse Temporal
Transformer can refine the feature map between the two.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SegOutput(NamedTuple):
    """``logits``: (B, classes, H, W) at input size; ``aux``: auxiliary logits at input size
    (empty in eval mode)."""

    logits: Tensor
    aux: list[Tensor]


class SegNet(nn.Module):
    """Base class of the per-frame networks (BiSeNet, PSPNet).

    Subclasses set ``feat_channels`` (channels of the 1/8 map returned by ``features``) and
    ``num_classes`` and implement ``features``, ``head`` and ``aux_logits``.
    """

    feat_channels: int
    num_classes: int
    stride: int = 8

    def features(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Image (B, 3, H, W), normalised -> (feature map (B, C, H/8, W/8), aux inputs)."""
        raise NotImplementedError

    def head(self, feat: Tensor) -> Tensor:
        """Feature map (B, C, H/8, W/8) -> logits (B, classes, H/8, W/8)."""
        raise NotImplementedError

    def aux_logits(self, aux: tuple[Tensor, ...]) -> list[Tensor]:
        """Auxiliary-head logits at their own strides (training only)."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> SegOutput:
        feat, aux = self.features(x)
        size = x.shape[-2:]
        logits = upsample(self.head(feat), size)
        aux_out = [upsample(a, size) for a in self.aux_logits(aux)] if self.training else []
        return SegOutput(logits, aux_out)


def upsample(logits: Tensor, size: torch.Size | tuple[int, int]) -> Tensor:
    """Bilinear resize of logits to ``size`` (align_corners=False, as at training time)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


class ConvBNReLU(nn.Sequential):
    """conv (no bias) -> BatchNorm -> ReLU, the building block of both networks."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, padding: int | None = None,
                 dilation: int = 1) -> None:
        if padding is None:
            padding = dilation * (k - 1) // 2
        super().__init__(
            nn.Conv2d(cin, cout, k, stride, padding, dilation=dilation, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )
