"""How the teacher's outputs are centred before sharpening (DINO §3.2 "avoiding collapse"): DINO's
running-mean centre, or DINOv2's Sinkhorn-Knopp batch normalisation. The temperature schedule is
in ``vidistill.train.schedules``.

Both give a per-prototype offset ``c`` that the losses subtract from the teacher's logits before
the softmax, p_T = σ_τT(z_T − c) (:func:`vidistill.objective.cross_entropy.teacher_probs`): the
chunked dense cross-entropy then never needs the whole [rows, out_dim] target matrix.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import nn

from vidistill.config import CENTRINGS
from vidistill.objective.chunks import chunk_rows


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


class Centre(nn.Module):
    """c ← m·c + (1−m)·mean(teacher outputs), the mean taken over every process.

    Centring stops one dimension from dominating; sharpening (a low teacher temperature) stops
    the uniform collapse. The method keeps two of these: [CLS] and patch outputs have different
    distributions (as in iBOT). The targets of a batch use the centre of the batches before it.
    """

    def __init__(self, dim: int, momentum: float = 0.9):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("value", torch.zeros(1, dim))

    def offset(self, teacher_out: torch.Tensor, temp: float) -> torch.Tensor:
        return self.value

    @torch.no_grad()
    def update(self, teacher_out: torch.Tensor) -> None:
        flat = teacher_out.reshape(-1, teacher_out.shape[-1]).float()
        batch_sum = flat.sum(dim=0, keepdim=True)
        count = torch.tensor([flat.shape[0]], device=flat.device, dtype=torch.float32)
        if _distributed():
            dist.all_reduce(batch_sum)
            dist.all_reduce(count)
        self.value.mul_(self.momentum).add_(batch_sum / count, alpha=1.0 - self.momentum)


# exp(d) for d below this is < 2^-115 of the largest term (exp(0) = 1): nothing in a float32 sum.
_NEGLIGIBLE = -80.0


def logsumexp(x: torch.Tensor, dim: int, overwrite: bool = False) -> torch.Tensor:
    """``torch.logsumexp(x, dim)`` (equal to it in float32: tests/test_sinkhorn_centring.py) without
    its slow path on CPU: torch's vectorised ``exp`` is ~20x slower for arguments below about −87
    (results under float32's smallest normal), and at a teacher temperature of 0.01 almost every
    x − max is far below that (measured: 27 ms vs 1.4 ms for 576 × 4096). Those arguments are
    raised to −80 first: each term is then < 2^-115 of the max's exp(0) = 1, which no float32
    sum holding that 1 can see. ``overwrite``: ``x`` is a temporary of the caller's, used as the
    work buffer (one [rows, K] allocation and pass fewer)."""
    top = x.amax(dim, keepdim=True)
    finite_top = top.masked_fill(top.isinf(), 0.0)  # an inf along dim: handled as torch does
    work = x.sub_(finite_top) if overwrite else x - finite_top
    out = work.clamp_(min=_NEGLIGIBLE).exp_().sum(dim, keepdim=True).log_().add_(finite_top)
    out = out.masked_fill(top == float("-inf"), float("-inf"))  # every term exp(−inf) = 0
    return out.squeeze(dim)


def _logsumexp_rows(x_chunks, log_v: torch.Tensor, chunk: int) -> torch.Tensor:
    """log Σ_b exp(x[b, k] + log_v[b]) per prototype k, over every process's rows."""
    lse = None
    for start, x in x_chunks():
        part = logsumexp(x + log_v[start:start + chunk, None], dim=0, overwrite=True)
        lse = part if lse is None else torch.logaddexp(lse, part)
    if _distributed():
        top = lse.clone()
        dist.all_reduce(top, op=dist.ReduceOp.MAX)
        total = torch.exp(lse - top)
        dist.all_reduce(total)
        lse = top + torch.log(total)
    return lse


@torch.no_grad()
def sinkhorn_knopp_log_scaling(teacher_out: torch.Tensor, temp: float, iterations: int = 3,
                               chunk: int | None = None) -> torch.Tensor:
    """log u (out_dim,) such that p_b = softmax(z_b/τ + log u) are DINOv2's Sinkhorn-Knopp targets.

    DINOv2 (``sinkhorn_knopp_teacher``) alternates, on Q = exp(z/τ) (rows = the batch's B outputs
    over all processes, columns = K prototypes): every prototype's column scaled to total mass 1/K,
    then every row to 1/B, ``iterations`` times, and returns the rows (each sums to 1). Q's
    scalings are diagonal, Q = diag(v)·exp(z/τ)·diag(u), so the targets are the row softmax of
    z/τ + log u and only u need be found:
        log u_k = −log K − logsumexp_b (z_bk/τ + log v_b)
        log v_b = −log B − logsumexp_k (z_bk/τ + log u_k)
    in log space (exp(z/τ) overflows float32 at τ = 0.01), ``chunk`` rows at a time.
    """
    z = teacher_out.detach().reshape(-1, teacher_out.shape[-1]).float()
    rows, k = z.shape
    chunk = chunk or rows
    total_rows = torch.tensor(float(rows), device=z.device)
    if _distributed():
        dist.all_reduce(total_rows)

    # z/τ is used 2·iterations times: kept whole when it is small (up to 4 chunks), else made per chunk.
    whole = z / temp if rows <= 4 * chunk else None

    def x_chunks():
        for start in range(0, rows, chunk):
            yield start, (whole[start:start + chunk] if whole is not None else z[start:start + chunk] / temp)

    log_v = torch.zeros(rows, device=z.device)
    log_u = torch.zeros(k, device=z.device)
    for _ in range(iterations):
        log_u = -math.log(k) - _logsumexp_rows(x_chunks, log_v, chunk)
        for start, x in x_chunks():
            log_v[start:start + chunk] = -torch.log(total_rows) - logsumexp(x + log_u, dim=-1, overwrite=True)
    return log_u


class SinkhornKnoppCentre(nn.Module):
    """DINOv2's centring: the batch's own targets, balanced over the prototypes by a few
    Sinkhorn-Knopp iterations (:func:`sinkhorn_knopp_log_scaling`), as the offset c = −τ·log u.

    A running-mean centre only removes what the outputs share on average; when the inputs are
    alike (one robot's fixed camera) what is left after it is small, and the targets go uniform
    (docs: benchmarks/training_signals.md). Sinkhorn-Knopp asks every prototype to take an equal
    share of the batch whatever the spread, so the rows stay sharp and use many prototypes.
    ``value`` keeps the last batch's offset (same state as :class:`Centre`, for checkpoints).
    """

    def __init__(self, dim: int, iterations: int = 3, chunk_elements: int | None = None):
        super().__init__()
        self.iterations = iterations
        self.chunk_elements = chunk_elements  # None: the device's (vidistill.objective.chunks)
        self.register_buffer("value", torch.zeros(1, dim))

    @torch.no_grad()
    def offset(self, teacher_out: torch.Tensor, temp: float) -> torch.Tensor:
        chunk = chunk_rows(teacher_out.device, teacher_out.shape[-1], self.chunk_elements)
        log_u = sinkhorn_knopp_log_scaling(teacher_out, temp, self.iterations, chunk)
        self.value.copy_(-temp * log_u.unsqueeze(0))
        return self.value

    def update(self, teacher_out: torch.Tensor) -> None:
        """Nothing carries over between batches."""


def build_centre(kind: str, dim: int, momentum: float = 0.9, iterations: int = 3) -> nn.Module:
    if kind == "ema":
        return Centre(dim, momentum)
    if kind == "sinkhorn_knopp":
        return SinkhornKnoppCentre(dim, iterations)
    raise ValueError(f"unknown centring {kind!r}: expected one of {', '.join(CENTRINGS)}")
