"""Process-group helpers for torchrun (DDP), and BatchNorm synchronised across CPU processes.

``torch.nn.SyncBatchNorm`` runs on GPUs only; :class:`DistBatchNorm2d` does the same on any device
with a differentiable all-reduce of the per-channel sums, so a batch split over N gloo processes
normalises with the statistics of the whole batch, exactly as one process would.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import Tensor, nn


def world() -> tuple[int, int, int]:
    """(rank, local rank, world size) from torchrun's environment (0, 0, 1 without it)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def init(device: torch.device) -> bool:
    """Initialise the default process group when started by torchrun with WORLD_SIZE > 1."""
    _, _, size = world()
    if size <= 1 or (dist.is_available() and dist.is_initialized()):
        return size > 1
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_mean(x: Tensor) -> Tensor:
    """Mean of a tensor over processes (no autograd)."""
    if not is_dist():
        return x
    x = x.detach().clone()
    dist.all_reduce(x)
    return x / dist.get_world_size()


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes whose backward sums the gradients over processes too."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # noqa: ANN001
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # noqa: ANN001
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def all_reduce_sum(x: Tensor) -> Tensor:
    """Differentiable all-reduce (sum): the gradient of every process's loss reaches every input."""
    return _AllReduceSum.apply(x)


class DistBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics cover the batch of every process (any device)."""

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and is_dist()):
            return super().forward(x)
        c = x.shape[1]
        # two passes (mean, then squared deviations) in float64: as accurate as one process's BatchNorm
        xd = x.double()
        n = x.numel() / c * dist.get_world_size()
        mean = all_reduce_sum(xd.sum((0, 2, 3))) / n
        var = all_reduce_sum(((xd - mean[None, :, None, None]) ** 2).sum((0, 2, 3))) / n
        mean, var = mean.to(x.dtype), var.to(x.dtype)
        if self.track_running_stats:
            with torch.no_grad():
                m = self.momentum if self.momentum is not None else 0.1
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / max(n - 1, 1), alpha=m)
                self.num_batches_tracked.add_(1)
        y = (x - mean[None, :, None, None]) * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y


def convert_sync_bn(module: nn.Module, device: torch.device) -> nn.Module:
    """torch's SyncBatchNorm on CUDA; :class:`DistBatchNorm2d` elsewhere (same state-dict keys)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert(module)


def _convert(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, DistBatchNorm2d):
        out = DistBatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        out.load_state_dict(module.state_dict())
    for name, child in module.named_children():
        out.add_module(name, _convert(child))
    return out

