"""One code path for one CPU, one GPU or many (torchrun + DistributedDataParallel)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistContext:
    """Where this process runs and its place among the training processes."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistContext:
    """Join the process group when started by torchrun (RANK/WORLD_SIZE set), else run alone.

    NCCL on CUDA, Gloo on CPU. ``device``: "auto" (CUDA when available), "cpu" or "cuda".
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    target = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(target)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistContext(rank, local_rank, world_size, target)


def wrap_model(model: nn.Module, context: DistContext) -> nn.Module:
    """The model on its device, wrapped in DDP when several processes train together."""
    model = model.to(context.device)
    if context.distributed:
        device_ids = [context.local_rank] if context.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a DDP wrapper (for checkpoints and evaluation)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def barrier(context: DistContext) -> None:
    """Wait for every process (no-op when alone)."""
    if context.distributed:
        dist.barrier()


def shutdown(context: DistContext) -> None:
    """Leave the process group."""
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()
