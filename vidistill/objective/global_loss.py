"""Global loss, the paper's eq. (2), and DINO's multi-crop loss for the baselines."""

from __future__ import annotations

import torch

from vidistill.objective.cross_entropy import (
    DistillationLoss,
    DistillationStats,
    distillation_stats,
    soft_cross_entropy,
    teacher_probs,
)


class GlobalLoss(DistillationLoss):
    """L_global = 1/((K−1)L) Σ_{j=t+Δ}^{t+(K−1)Δ} Σ_ℓ CE( σ_τT(z̃^T_j − c_cls), σ_τS(z̃^S_{j,ℓ}) )

    The teacher's [CLS] output of frame j's global view is the target for the student's [CLS]
    output of each of frame j's L local views.
    """

    def forward(
        self, student_local: torch.Tensor, teacher_cls: torch.Tensor, teacher_temp: float
    ) -> tuple[torch.Tensor, DistillationStats]:
        """student_local (B, K−1, L, C); teacher_cls (B, K−1, C)."""
        if student_local.dim() != 4 or student_local.shape[:2] != teacher_cls.shape[:2]:
            raise ValueError(
                f"expected (B, K-1, L, C) and (B, K-1, C), got {tuple(student_local.shape)} "
                f"and {tuple(teacher_cls.shape)}"
            )
        p_t = teacher_probs(teacher_cls, self.centre.offset(teacher_cls, teacher_temp), teacher_temp)
        loss = soft_cross_entropy(p_t.unsqueeze(2), student_local, self.student_temp).mean()
        stats = distillation_stats(loss, p_t)
        self.centre.update(teacher_cls)
        return loss, stats


class MultiCropDINOLoss(DistillationLoss):
    """DINO (Caron et al. 2021, eq. 3): Σ_{x∈{g1,g2}} Σ_{x'≠x} H(P_T(x), P_S(x')) over all views.

    ``student_out`` (B, V, C) holds the student's views, the first ``G`` being the same global
    views the teacher saw (``teacher_out`` (B, G, C)); a view is never compared with itself.
    """

    def forward(
        self, student_out: torch.Tensor, teacher_out: torch.Tensor, teacher_temp: float
    ) -> tuple[torch.Tensor, DistillationStats]:
        num_teacher, num_student = teacher_out.shape[1], student_out.shape[1]
        p_t = teacher_probs(teacher_out, self.centre.offset(teacher_out, teacher_temp), teacher_temp)
        # ce[b, i, v] = H(teacher view i, student view v)
        ce = soft_cross_entropy(p_t.unsqueeze(2), student_out.unsqueeze(1), self.student_temp)
        same_view = torch.eye(num_teacher, num_student, dtype=torch.bool, device=ce.device)
        loss = ce.masked_select(~same_view.expand_as(ce)).mean()
        stats = distillation_stats(loss, p_t)
        self.centre.update(teacher_out)
        return loss, stats
