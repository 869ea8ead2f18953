"""The soft cross-entropy every DINO-style loss is made of, and its collapse diagnostics."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vidistill.objective.centring import Centre


def teacher_probs(teacher_out: torch.Tensor, centre: torch.Tensor, temp: float) -> torch.Tensor:
    """σ_τT(z_T − c): centred, sharpened teacher distribution (no gradient flows to the teacher)."""
    return F.softmax((teacher_out.detach().float() - centre) / temp, dim=-1)


def soft_cross_entropy(target_probs: torch.Tensor, student_out: torch.Tensor, student_temp: float) -> torch.Tensor:
    """H(p_T, p_S) = −Σ_k p_T[k] · log σ_τS(z_S)[k], per row (no reduction over rows)."""
    return -(target_probs * F.log_softmax(student_out.float() / student_temp, dim=-1)).sum(dim=-1)


@dataclass
class DistillationStats:
    """Collapse shows here first: uniform collapse drives H(p_T) → log(out_dim) with KL → 0,
    one-hot collapse drives H(p_T) → 0 with KL → 0. Partial collapse (every target sharp, but
    all of them on a few prototypes) hides from the per-row entropy: it shows in
    ``prototypes_used``, exp H(mean of p_T over the batch's rows), the number of prototypes the
    batch's targets spread over (out_dim when they cover all of them evenly, 1 when every row
    picks the same one)."""

    loss: torch.Tensor  # 0-d tensors: read them all at once (one device sync per step)
    teacher_entropy: torch.Tensor  # mean H(p_T) in nats
    kl: torch.Tensor  # mean KL(p_T ‖ p_S) = H(p_T, p_S) − H(p_T)
    prototypes_used: torch.Tensor  # exp H(E_batch p_T)

    def as_dict(self, prefix: str) -> dict[str, torch.Tensor]:
        return {
            f"{prefix}loss": self.loss,
            f"{prefix}teacher_entropy": self.teacher_entropy,
            f"{prefix}kl": self.kl,
            f"{prefix}prototypes_used": self.prototypes_used,
        }


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """H(p) = −Σ_k p[k] log p[k] over the last dimension, in nats (0 · log 0 = 0)."""
    return -(probs * torch.log(probs.clamp_min(1e-12))).sum(-1)


@torch.no_grad()
def distillation_stats(loss: torch.Tensor, probs: torch.Tensor) -> DistillationStats:
    mean_entropy = entropy(probs).mean()
    used = torch.exp(entropy(probs.reshape(-1, probs.shape[-1]).mean(0)))
    loss = loss.detach()
    return DistillationStats(loss, mean_entropy, loss - mean_entropy, used)


class DistillationLoss(nn.Module):
    """What every loss here shares: the student temperature τ_S and its own teacher centre."""

    def __init__(self, out_dim: int, student_temp: float = 0.1, centre_momentum: float = 0.9):
        super().__init__()
        self.student_temp = student_temp
        self.centre = Centre(out_dim, centre_momentum)
