"""Dense next-frame loss, the paper's eq. (1)."""

from __future__ import annotations

import torch

from vidistill.objective.cross_entropy import DistillationLoss, DistillationStats, chunked_distillation


class DenseNextFrameLoss(DistillationLoss):
    """L_dense = 1/(K−1) Σ_{j=t}^{t+(K−2)Δ} P-CE( σ_τT(z^T_{j+Δ} − c_patch), σ_τS(ẑ^S_{j→j+Δ}) )

    ``student_pred[:, j]`` is the student's prediction from frame j, ``teacher_out[:, j]`` the
    teacher's patch outputs of frame j+1 (the next one): pairs are aligned by construction, so
    a frame is never its own target. P-CE averages over the P patches; the loss then averages
    over the K−1 pairs and the batch.
    """

    def forward(
        self, student_pred: torch.Tensor, teacher_out: torch.Tensor, teacher_temp: float
    ) -> tuple[torch.Tensor, DistillationStats]:
        if student_pred.shape != teacher_out.shape or student_pred.dim() != 4:
            raise ValueError(
                f"expected (B, K-1, P, out_dim) for both, got {tuple(student_pred.shape)} "
                f"and {tuple(teacher_out.shape)}"
            )
        # Chunked over rows: the [B·(K−1)·P, out_dim] temporaries are never held whole.
        loss, stats = chunked_distillation(student_pred, teacher_out, self.centre.offset(teacher_out, teacher_temp), teacher_temp,
                                           self.student_temp)
        self.centre.update(teacher_out)
        return loss, stats
