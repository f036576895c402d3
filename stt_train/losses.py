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


def warp_backward(x: Tensor, flow: Tensor) -> tuple[Tensor, Tensor]:
    """Sample ``x`` (B, C, H, W), a map of the previous frame, at ``p + flow(p)`` for every pixel p of the
    current frame (bilinear; zeros outside): the previous frame's map moved onto the current frame.
    ``flow`` (B, 2, H, W) in pixels, x then y, as SynthDrive's backward flow. Returns the warped map and
    ``inside`` (B, H, W), where ``p + flow(p)`` lands within the previous frame."""
    _, _, h, w = x.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=x.device, dtype=flow.dtype),
                            torch.arange(w, device=x.device, dtype=flow.dtype), indexing="ij")
    x1, y1 = xs + flow[:, 0], ys + flow[:, 1]
    inside = (x1 >= 0) & (x1 <= w - 1) & (y1 >= 0) & (y1 <= h - 1)
    grid = torch.stack([x1 * (2 / max(w - 1, 1)) - 1, y1 * (2 / max(h - 1, 1)) - 1], -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True), inside


def temporal_loss(logits: Tensor, flow: Tensor, valid: Tensor) -> Tensor:
    """A temporal loss after ETC's (Liu et al., ECCV 2020): for each pair of consecutive frames, the squared
    difference between the current frame's class probabilities and the previous frame's, moved onto the
    current frame by the backward flow, summed over classes and averaged over the pixels where the
    flow is valid (not occluded) and lands inside the previous frame; then averaged over pairs and
    images (per image first, so a batch split across processes averages to the whole batch's loss).

    ``logits`` (B, N, C, H, W) of N consecutive frames, ``flow`` (B, N - 1, 2, H, W) and ``valid``
    (B, N - 1, H, W): frame k's backward flow to frame k - 1, for k = 1 .. N - 1. Gradients reach both
    frames of each pair.
    """
    b, n = logits.shape[:2]
    if n < 2:
        raise ValueError(f"the temporal loss needs at least 2 frames per clip, got {n}")
    prob = logits.float().softmax(2)
    per_image = torch.zeros(b, device=logits.device)
    for k in range(1, n):
        warped, inside = warp_backward(prob[:, k - 1], flow[:, k - 1].float())
        mask = valid[:, k - 1] & inside
        diff = ((prob[:, k] - warped) ** 2).sum(1)
        count = mask.flatten(1).sum(1)
        per_image = per_image + (diff * mask).flatten(1).sum(1) / count.clamp(min=1)
    return (per_image / (n - 1)).mean()
