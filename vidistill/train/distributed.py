"""Process-group set-up for ``torchrun`` (NCCL on GPU, gloo on CPU) and a single process."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def process_device(name: str, local_rank: int = 0) -> torch.device:
    """``--device`` for this training process: the runtime's rule (auto / cpu / cuda[:N], a clear
    error without CUDA), and a bare "cuda" becomes this process's GPU under torchrun."""
    from vidistill.runtime.torch_model import resolve_device

    device = torch.device(resolve_device(name))
    return torch.device("cuda", local_rank) if device.type == "cuda" and device.index is None else device


def setup_distributed(device_name: str = "auto") -> DistributedContext:
    """Reads torchrun's RANK/WORLD_SIZE/LOCAL_RANK; a plain ``python`` run is a world of one."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = process_device(device_name, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
    return DistributedContext(rank, world_size, local_rank, device)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_flag(flag: bool, ctx: DistributedContext) -> bool:
    """True on every rank if it is True on any rank (e.g. a non-finite loss on one GPU)."""
    if not ctx.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)
