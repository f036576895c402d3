"""Online hard example mining (OHEM) cross-entropy, per image.

As in BiSeNet's OhemCELoss: pixels whose probability of the true class is below ``thresh``
(loss above -log(thresh)) are kept, but at least ``min_kept`` of the image's labelled pixels (the
hardest ones). Mining runs per image and the loss is the mean over images, so the loss of a batch
split across processes averages to exactly the loss of the whole batch in one process.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class OhemCELoss(nn.Module):
    def __init__(self, thresh: float = 0.7, min_kept: float = 1 / 16, ignore_index: int = 255) -> None:
        super().__init__()
        self.loss_thresh = -math.log(thresh)
        self.min_kept = min_kept
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, label: Tensor) -> Tensor:
        """``logits`` (B, C, H, W), ``label`` (B, H, W) int64 -> scalar."""
        loss = F.cross_entropy(logits.float(), label, ignore_index=self.ignore_index, reduction="none")
        loss = loss.flatten(1)
        valid = (label != self.ignore_index).flatten(1)
        per_image = []
        for b in range(loss.shape[0]):
            n_valid = int(valid[b].sum())
            if n_valid == 0:
                per_image.append(loss[b].sum() * 0.0)
                continue
            lb = loss[b][valid[b]]
            n_min = max(1, int(n_valid * self.min_kept))
            hard = lb[lb > self.loss_thresh]
            if hard.numel() < n_min:
                hard = lb.topk(n_min).values
            per_image.append(hard.mean())
        return torch.stack(per_image).mean()
