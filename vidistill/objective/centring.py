"""Teacher-output centring (DINO §3.2 "avoiding collapse"); the temperature schedule is in
``vidistill.train.schedules``."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class Centre(nn.Module):
    """c ← m·c + (1−m)·mean(teacher outputs), the mean taken over every process.

    Centring stops one dimension from dominating; sharpening (a low teacher temperature) stops
    the uniform collapse. The method keeps two of these: [CLS] and patch outputs have different
    distributions (as in iBOT).
    """

    def __init__(self, dim: int, momentum: float = 0.9):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("value", torch.zeros(1, dim))

    @torch.no_grad()
    def update(self, teacher_out: torch.Tensor) -> None:
        flat = teacher_out.reshape(-1, teacher_out.shape[-1]).float()
        batch_sum = flat.sum(dim=0, keepdim=True)
        count = torch.tensor([flat.shape[0]], device=flat.device, dtype=torch.float32)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(batch_sum)
            dist.all_reduce(count)
        self.value.mul_(self.momentum).add_(batch_sum / count, alpha=1.0 - self.momentum)
