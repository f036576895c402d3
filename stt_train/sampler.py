"""ClipSampler: DistributedSampler that can start mid-epoch and hands every clip its own seed.

The permutation of epoch e is ``randperm(n)`` from a generator seeded with ``seed + e`` (as
``DistributedSampler`` does), cut to whole global batches; process r takes every
``world_size``-th clip starting at r, so global batch b holds the same clips whatever the number
of processes. Each yielded item is ``(index, (seed, epoch, index))``: the dataset seeds the clip's
augmentation with the tuple, which makes augmentation independent of worker processes and of
where a resumed run starts (``set_position(epoch, batch)``).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DistributedSampler


class _Sized:
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


class ClipSampler(DistributedSampler):
    def __init__(self, num_clips: int, num_replicas: int, rank: int, seed: int, local_batch: int) -> None:
        super().__init__(_Sized(num_clips), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed,
                         drop_last=True)
        self.num_clips, self.local_batch, self.start_batch = num_clips, local_batch, 0
        global_batch = local_batch * num_replicas
        self.per_epoch = num_clips // global_batch  # global batches per epoch

    def set_position(self, epoch: int, start_batch: int = 0) -> None:
        self.set_epoch(epoch)
        self.start_batch = start_batch

    def _mine(self) -> list[int]:
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        perm = torch.randperm(self.num_clips, generator=g).tolist()
        perm = perm[: self.per_epoch * self.local_batch * self.num_replicas]
        return perm[self.rank::self.num_replicas][self.start_batch * self.local_batch:]

    def __iter__(self) -> Iterator[tuple[int, tuple[int, int, int]]]:
        for i in self._mine():
            yield i, (self.seed, self.epoch, i)

    def __len__(self) -> int:
        return (self.per_epoch - self.start_batch) * self.local_batch
