"""An ETC-style temporal loss along SynthDrive's exact flow (research: ``research.temporal_weight``).

After ETC (Liu et al., ECCV 2020), with our flow, masks and weighting: the squared difference of
consecutive frames' class probabilities where the ground-truth flow is valid. The paper's loss
(the target frame's cross-entropy) barely rewards fusing the past; this asks for consistency
directly. See :mod:`stt_train.research.train`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


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
