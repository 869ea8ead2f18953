"""Who sees what: the method (next-frame self-distillation) and the DINO baselines of Table 1.

Each objective takes the student, the teacher and a batch of views and returns the loss and a
flat dict of diagnostics. Views arrive as ``globals`` (B, K, 3, H, W) and ``locals``
(B, K−1, L, 3, h, w): for the method, K frames of one clip with shared geometry; for the DINO
baselines, K=2 global views of one frame (or of two frames Δ apart: time-aug) and their locals.
An ``anchor`` (adaptation's Gram anchor, :mod:`vidistill.train.adaptation`), when given, is
called with the global views the student encoded and the patch tokens it made of them, and its
term is added to the loss: one student forward for both.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from vidistill.config import Config
from vidistill.objective.dense import DenseNextFrameLoss
from vidistill.objective.global_loss import GlobalLoss, MultiCropDINOLoss

# (student global views, the student's patch tokens of them) -> (loss term, its diagnostics)
Anchor = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict[str, torch.Tensor]]]


def add_anchor(anchor: Anchor | None, loss: torch.Tensor, stats: dict, views: torch.Tensor | None,
               patches: torch.Tensor | None) -> torch.Tensor:
    """``loss`` plus the anchor's term on the student's global patch tokens (stats updated)."""
    if anchor is None:
        return loss
    if views is None or patches is None:
        raise RuntimeError("the anchor needs the student to encode global views (not objective 'global')")
    term, st = anchor(views, patches)
    stats.update(st)
    return loss + term


class NextFrameDistillation(nn.Module):
    """0.5·L_dense + 0.5·L_global (or one term alone: the Table 1 ablations).

    Student: global views of x_t … x_{t+(K−2)Δ} (all but the last frame) and all local views.
    Teacher: global views of x_{t+Δ} … x_{t+(K−1)Δ} (docs/METHOD.md: the loss formulas need every
    frame from x_{t+Δ}, whatever the paper's prose says).
    """

    def __init__(self, cfg: Config):
        super().__init__()
        o = cfg.optim
        self.use_dense, self.use_global = cfg.objective.uses_dense, cfg.objective.uses_global
        self.dense_weight = 0.5 if self.use_global else 1.0
        self.global_weight = 0.5 if self.use_dense else 1.0
        centring = (o.center_momentum, o.centring, o.sinkhorn_iterations)
        self.dense_loss = DenseNextFrameLoss(cfg.model.out_dim, o.student_temp, *centring)
        self.global_loss = GlobalLoss(cfg.model.out_dim, o.student_temp, *centring)

    def forward(
        self, student: nn.Module, teacher: nn.Module, globals_: torch.Tensor, locals_: torch.Tensor, teacher_temp: float,
        anchor: Anchor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        b, k = globals_.shape[:2]
        future = globals_[:, 1:].flatten(0, 1)  # x_{t+Δ} … x_{t+(K−1)Δ}
        t_cls, t_patch = teacher(future, with_patches=self.use_dense)
        student_globals = globals_[:, :-1].flatten(0, 1) if self.use_dense else None  # x_t … x_{t+(K−2)Δ}
        s = student(student_globals, locals_.flatten(0, 2) if self.use_global else None, predict_dense=True)
        loss = globals_.new_zeros(())
        stats: dict[str, torch.Tensor] = {}
        if self.use_dense:
            pred = s.patch_pred.unflatten(0, (b, k - 1))
            l_dense, st = self.dense_loss(pred, t_patch.unflatten(0, (b, k - 1)), teacher_temp)
            loss = loss + self.dense_weight * l_dense
            stats.update(st.as_dict("dense/"))
        if self.use_global:
            local_cls = s.local_cls.unflatten(0, (b, k - 1, locals_.shape[2]))
            l_global, st = self.global_loss(local_cls, t_cls.unflatten(0, (b, k - 1)), teacher_temp)
            loss = loss + self.global_weight * l_global
            stats.update(st.as_dict("global/"))
        return add_anchor(anchor, loss, stats, student_globals, s.global_patches), stats


class FrameDINO(nn.Module):
    """Plain DINO on frames (with or without pre-crop, or time-aug): the Table 1 baselines.

    Teacher: the two global views' [CLS]. Student: both global views and the local views'
    [CLS], no predictor. Same model, same head, and as many student views as the method:
    2 globals + (K−1)·L locals (``DataConfig.frame_dino_num_local``).
    """

    def __init__(self, cfg: Config):
        super().__init__()
        o = cfg.optim
        self.loss = MultiCropDINOLoss(cfg.model.out_dim, o.student_temp, o.center_momentum, o.centring,
                                      o.sinkhorn_iterations)

    def forward(
        self, student: nn.Module, teacher: nn.Module, globals_: torch.Tensor, locals_: torch.Tensor, teacher_temp: float,
        anchor: Anchor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        b, g = globals_.shape[:2]
        t_cls, _ = teacher(globals_.flatten(0, 1), with_patches=False)
        s = student(globals_.flatten(0, 1), locals_.flatten(0, 2), predict_dense=False)
        student_views = torch.cat([s.global_cls.unflatten(0, (b, g)), s.local_cls.unflatten(0, (b, -1))], dim=1)
        loss, st = self.loss(student_views, t_cls.unflatten(0, (b, g)), teacher_temp)
        stats = st.as_dict("global/")
        return add_anchor(anchor, loss, stats, globals_.flatten(0, 1), s.global_patches), stats


def build_objective(cfg: Config) -> nn.Module:
    return FrameDINO(cfg) if cfg.objective.is_frame_dino else NextFrameDistillation(cfg)
