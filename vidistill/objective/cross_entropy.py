"""The soft cross-entropy every DINO-style loss is made of, and its collapse diagnostics."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vidistill.objective.centring import build_centre
from vidistill.objective.chunks import chunk_rows


def sharpened(teacher_out: torch.Tensor, centre: torch.Tensor, temp: float) -> torch.Tensor:
    """(z_T − c)/τT: the teacher's centred logits at its temperature (no gradient to the teacher)."""
    return (teacher_out.detach().float() - centre).div_(temp)


def teacher_probs(teacher_out: torch.Tensor, centre: torch.Tensor, temp: float) -> torch.Tensor:
    """σ_τT(z_T − c): centred, sharpened teacher distribution (no gradient flows to the teacher)."""
    return F.softmax(sharpened(teacher_out, centre, temp), dim=-1)


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


class _ChunkedSoftCrossEntropy(torch.autograd.Function):
    """Per row: H(σ_τT(t − c), σ_τS(s)), the teacher's entropy H(σ_τT(t − c)), and the sum over rows
    of the teacher's probabilities, computed ``chunk`` rows at a time.

    The unchunked expression holds several [rows, out_dim] float32 temporaries at once (centred
    and scaled teacher, its softmax, the student's log-softmax saved for backward, their
    product) and as many again in backward: at the paper's dense shapes (64·2·196 rows × 16384)
    each is 1.6 GB. Here only one chunk's temporaries live at a time, plus the gradient with
    respect to the student's logits, (σ_τS(s) − p)/τS per row (Σp = 1), which forward writes chunk by
    chunk into one [rows, out_dim] tensor that backward scales in place by the incoming gradient
    (the same expression autograd differentiates; equal up to float rounding, tested).
    """

    @staticmethod
    def forward(ctx, student: torch.Tensor, teacher: torch.Tensor, centre: torch.Tensor,
                teacher_temp: float, student_temp: float, chunk: int):
        rows = student.shape[0]
        ce = student.new_empty(rows, dtype=torch.float32)
        target_entropy = torch.empty_like(ce)
        prob_sum = torch.zeros(student.shape[-1], dtype=torch.float32, device=student.device)
        grad = torch.empty(student.shape, dtype=torch.float32, device=student.device) if ctx.needs_input_grad[0] else None
        for start in range(0, rows, chunk):
            part = slice(start, start + chunk)
            logits = sharpened(teacher[part], centre, teacher_temp)
            p = F.softmax(logits, dim=-1)  # teacher_probs, keeping its argument for the entropy
            scaled = student[part].float() / student_temp
            ce[part] = -(p * F.log_softmax(scaled, dim=-1)).sum(dim=-1)
            # H(p) from log p = log_softmax: log(p) of the many underflowed p would take torch's slow log path
            target_entropy[part] = -(p * F.log_softmax(logits, dim=-1)).sum(dim=-1)
            prob_sum += p.sum(dim=0)
            if grad is not None:  # Σp = 1 (a softmax): the gradient is (σ_τS(s) − p)/τS
                # softmax again, not exp(log-softmax): torch's exp is 3-10x slower on CPU (measured)
                grad[part] = F.softmax(scaled, dim=-1).sub_(p).div_(student_temp)
        ctx.grad, ctx.dtype = grad, student.dtype
        ctx.mark_non_differentiable(target_entropy, prob_sum)
        return ce, target_entropy, prob_sum

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_ce: torch.Tensor, _entropy, _prob_sum):
        grad, ctx.grad = ctx.grad, None  # scaled in place: a second backward has nothing to use
        if grad is None:
            raise RuntimeError("chunked soft cross-entropy: backward called twice (retain_graph is not supported)")
        return grad.mul_(grad_ce.unsqueeze(-1)).to(ctx.dtype), None, None, None, None, None


def chunked_distillation(
    student_out: torch.Tensor, teacher_out: torch.Tensor, centre: torch.Tensor, teacher_temp: float,
    student_temp: float, chunk_elements: int | None = None,
) -> tuple[torch.Tensor, DistillationStats]:
    """Mean over rows of H(σ_τT(z_T − c), σ_τS(z_S)) and its :class:`DistillationStats`, the same
    numbers as :func:`teacher_probs` → :func:`soft_cross_entropy` → :func:`distillation_stats`
    without holding any [rows, out_dim] temporary whole (:class:`_ChunkedSoftCrossEntropy`).
    ``student_out`` and ``teacher_out``: (..., out_dim) of the same shape."""
    if student_out.shape != teacher_out.shape:
        raise ValueError(f"student and teacher shapes differ: {tuple(student_out.shape)} vs {tuple(teacher_out.shape)}")
    out_dim = student_out.shape[-1]
    student, teacher = student_out.reshape(-1, out_dim), teacher_out.detach().reshape(-1, out_dim)
    chunk = chunk_rows(student.device, out_dim, chunk_elements)
    ce, target_entropy, prob_sum = _ChunkedSoftCrossEntropy.apply(
        student, teacher, centre.detach(), teacher_temp, student_temp, chunk)
    loss = ce.mean()
    with torch.no_grad():
        mean_entropy = target_entropy.mean()
        used = torch.exp(entropy(prob_sum / student.shape[0]))
        return loss, DistillationStats(loss.detach(), mean_entropy, loss.detach() - mean_entropy, used)


class DistillationLoss(nn.Module):
    """What every loss here shares: the student temperature τ_S and its own teacher centring
    (``"ema"`` or ``"sinkhorn_knopp"``, :mod:`vidistill.objective.centring`)."""

    def __init__(self, out_dim: int, student_temp: float = 0.1, centre_momentum: float = 0.9,
                 centring: str = "ema", sinkhorn_iterations: int = 3):
        super().__init__()
        self.student_temp = student_temp
        self.centre = build_centre(centring, out_dim, centre_momentum, sinkhorn_iterations)
