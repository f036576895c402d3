"""The no-past control: STT with the transformer attending to the current frame in place of the past.

How much of a temporal model's gain needs the past? The control keeps everything (weights,
windows, number of key frames) but the memory: frame i's keys and values come from frame i itself,
so whatever the transformer adds beyond that is not temporal. The three places a model meets its
memory each get it here, one function each:

* :func:`no_past_clip`: a training clip whose previous frames are copies of its target frame
  (``VideoSegModel.forward_clip`` on it refines the target from itself);
* :func:`no_past_all_frames`: every frame of a clip refined from copies of itself (the temporal
  loss needs every frame's output);
* :func:`prime_no_past`: before each streamed frame, the ring buffer emptied and filled with that
  frame, as many times as the past would fill it (``evaluate_sequences(before_frame=...)``; the
  fps it reports are then meaningless).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from stt_ros.model.base import upsample
from stt_ros.model.zoo import VideoSegModel


def no_past_clip(clip: Tensor) -> Tensor:
    """``clip`` (B, N, 3, H, W) with every previous frame replaced by the target frame (the last)."""
    return clip[:, -1:].expand_as(clip)


def no_past_all_frames(model: VideoSegModel, clip: Tensor) -> Tensor:
    """Logits (B, N, classes, H, W) of every frame of ``clip``, frame i attending to N - 1 copies of its
    own keys/values: ``forward_clip(clip, all_frames=True)`` with the memory of the control."""
    b, n = clip.shape[:2]
    feats, _ = model.segnet.features(clip.flatten(0, 1))
    own = model.stt.project_memory(feats)[:, None]  # (B*N, 1 slot, heads, h*w, 2*head_dim)
    feats, own = feats.unflatten(0, (b, n)), own.unflatten(0, (b, n))
    out = [model.segnet.head(model.stt(feats[:, i], own[:, i], [0] * (n - 1))) for i in range(n)]
    return torch.stack([upsample(o, clip.shape[-2:]) for o in out], 1)


def prime_no_past(segmenter, image: np.ndarray, index: int) -> None:
    """Before frame ``index`` of a sequence: the segmenter's ring buffer holds ``image`` alone, min(index, T)
    times, in place of the previous frames (per-frame models have no buffer and are left alone)."""
    cfg = segmenter.backend.config
    if not cfg.temporal:
        return
    segmenter.reset()
    for _ in range(min(index, cfg.key_frames)):
        segmenter.process(image)
