"""Per-stream ring buffer of past frames' keys/values, preallocated on the model's device."""

from __future__ import annotations

import torch
from torch import Tensor


class RingBuffer:
    """T slots of one frame's memory each, in one preallocated tensor ``storage`` (1, T, *shape).

    ``push`` copies into the oldest slot (no allocation per frame; slot addresses never change, so
    CUDA graphs or TensorRT bindings can point at them). ``order`` lists the filled slots nearest
    first. ``reset`` forgets all frames without freeing memory.
    """

    def __init__(self, capacity: int, frame_shape: tuple[int, ...], device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        if capacity < 1:
            raise ValueError(f"ring buffer capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.frame_shape = tuple(frame_shape)
        self.storage = torch.zeros((1, capacity, *frame_shape), device=device, dtype=dtype)
        self._next = 0  # slot the next push writes
        self.fill = 0

    def push(self, frame: Tensor) -> int:
        """Copy one frame's memory (shape ``frame_shape``, or with a leading batch of 1) into the
        oldest slot; returns the slot index written."""
        if frame.dim() == len(self.frame_shape) + 1:
            frame = frame[0]
        if tuple(frame.shape) != self.frame_shape:
            raise ValueError(f"frame memory of shape {tuple(frame.shape)} does not fit slots of {self.frame_shape}")
        slot = self._next
        self.storage[0, slot].copy_(frame)
        self._next = (slot + 1) % self.capacity
        self.fill = min(self.fill + 1, self.capacity)
        return slot

    def order(self) -> list[int]:
        """Filled slot indices, most recent first."""
        return [(self._next - 1 - i) % self.capacity for i in range(self.fill)]

    def reset(self) -> None:
        self._next = 0
        self.fill = 0
