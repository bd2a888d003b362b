"""Process-group setup from the torchrun environment (one process = one device).

`torchrun --nproc_per_node=G [--nnodes=N --rdzv_endpoint=HOST:PORT] -m meddinov3.cli pretrain ...`
sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; a plain `meddinov3 pretrain` runs
as a single process without a process group. NCCL is used on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from meddinov3.devices import pick_device


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def rank_device(requested: str, local_rank: int) -> torch.device:
    """`run.device` (auto, cuda, mps, cpu; see meddinov3.devices) for this process: GPU `local_rank` on CUDA."""
    device = pick_device(requested)
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return device


def init_distributed(device: torch.device) -> tuple[DistInfo, bool]:
    """Join the process group torchrun describes; returns (info, whether this call created the group).

    A no-op without torchrun, or when the caller has already initialised a group.
    """
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank), False
    if int(os.environ.get("WORLD_SIZE", 1)) == 1:
        return DistInfo(), False
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank), True


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean over ranks (identity in a single process); for logging, not for gradients."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        value = value.detach().clone()
        dist.all_reduce(value)
        value /= dist.get_world_size()
    return value


def barrier() -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


class _AllGatherWithGrad(torch.autograd.Function):
    """Concatenate equal-sized tensors from every rank; gradients flow back to their owners.

    Every rank computes a loss on the same gathered tensor, so the gradient of a rank's slice is
    the sum over ranks of the gradients w.r.t. that slice.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, tensor.contiguous(), group=group)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous()
        dist.all_reduce(grad, group=ctx.group)
        own = grad.chunk(dist.get_world_size(ctx.group))[dist.get_rank(ctx.group)]
        return own, None


def all_gather_with_grad(tensor: torch.Tensor, group=None) -> torch.Tensor:
    return _AllGatherWithGrad.apply(tensor, group)


def gather_objects(obj) -> list:
    """Every rank's `obj`, on every rank (used to save each rank's RNG state)."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return [obj]
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered
