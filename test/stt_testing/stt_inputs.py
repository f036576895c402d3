"""Inputs for the Sparse Temporal Transformer's tests (model and export)."""

from __future__ import annotations

import torch

from stt_ros.model.stt import SparseTemporalTransformer


def make_memory(stt: SparseTemporalTransformer, frames: int, c: int, h: int, w: int, seed: int = 1) -> torch.Tensor:
    """Keys/values of ``frames`` random (c, h, w) feature maps: (1, frames, heads, h*w, 2 head_dim)."""
    g = torch.Generator().manual_seed(seed)
    return stt.project_memory(torch.randn(frames, c, h, w, generator=g))[None]
