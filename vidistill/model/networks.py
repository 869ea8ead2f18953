"""Student and teacher networks and the EMA that ties them (DINO's self-distillation pair)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vidistill.config import Config, ModelConfig
from vidistill.model.backbone import build_backbone, split_tokens
from vidistill.model.head import DINOHead
from vidistill.model.predictor import NextFramePredictor


@dataclass
class StudentOutputs:
    patch_pred: torch.Tensor | None  # (N, P, out_dim): predicted teacher outputs of frame t+Δ
    global_cls: torch.Tensor | None  # (N, out_dim): [CLS] of the global views (DINO baselines)
    local_cls: torch.Tensor | None  # (M, out_dim): [CLS] of the local views
    global_patches: torch.Tensor | None = None  # (N, P, D): backbone patch tokens of the global views (Gram anchor)


def build_head(m: ModelConfig, in_dim: int) -> DINOHead:
    return DINOHead(in_dim, m.out_dim, m.head_hidden_dim, m.head_bottleneck_dim, m.head_layers, m.norm_last_layer)


class Student(nn.Module):
    """Backbone (drop-path) → [predictor →] shared head.

    Everything the loss needs is computed in ``forward`` so that DistributedDataParallel sees
    every parameter that gets a gradient (calling sub-modules directly would bypass its hooks).
    """

    def __init__(self, cfg: Config):
        super().__init__()
        m = cfg.model
        self.model_cfg, self.image_size = m, cfg.data.global_size  # what Teacher rebuilds from
        self.backbone = build_backbone(m.arch, cfg.data.global_size, drop_path=m.drop_path, model_args=m.model_args)
        dim = self.backbone.embed_dim
        self.head = build_head(m, dim)
        self.global_through_predictor = m.global_through_predictor
        self.predictor = (
            NextFramePredictor(dim, self.backbone.blocks[0].attn.num_heads, m.predictor_depth)
            if cfg.objective.uses_dense or self.global_through_predictor
            else None
        )

    def forward(
        self,
        global_views: torch.Tensor | None,
        local_views: torch.Tensor | None,
        predict_dense: bool,
    ) -> StudentOutputs:
        patch_pred = global_cls = local_cls = global_patches = None
        if global_views is not None:
            cls, patches = split_tokens(self.backbone, self.backbone.forward_features(global_views))
            global_patches = patches
            if predict_dense:
                patch_pred = self.head(self.predictor(patches))
            else:
                global_cls = self.head(cls)
        if local_views is not None:
            cls, patches = split_tokens(self.backbone, self.backbone.forward_features(local_views))
            if self.global_through_predictor:
                # The [CLS] goes through the predictor together with its patch tokens (its
                # attention blocks need the context) and only the [CLS] output is kept.
                cls = self.predictor(torch.cat([cls.unsqueeze(1), patches], dim=1))[:, 0]
            local_cls = self.head(cls)
        return StudentOutputs(patch_pred, global_cls, local_cls, global_patches)


class Teacher(nn.Module):
    """Backbone + head, an EMA of the student's; no predictor, no drop-path, no gradients.

    Built plainly (drop-path 0) and loaded with the student's weights; always in eval mode, so
    a ``model.train()`` anywhere cannot switch on dropout or stochastic depth in the targets.
    """

    def __init__(self, student: Student):
        super().__init__()
        m = student.model_cfg
        self.backbone = build_backbone(m.arch, student.image_size, drop_path=0.0, model_args=m.model_args)
        self.head = build_head(m, self.backbone.embed_dim)
        self.backbone.load_state_dict(student.backbone.state_dict())
        self.head.load_state_dict(student.head.state_dict())
        self.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> Teacher:
        return super().train(False)

    @torch.no_grad()
    def forward(self, global_views: torch.Tensor, with_patches: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """[CLS] outputs (N, out_dim) and, if asked, patch outputs (N, P, out_dim)."""
        cls, patches = split_tokens(self.backbone, self.backbone.forward_features(global_views))
        if not with_patches:
            return self.head(cls), None
        # One head call over [CLS] and patches together: one big matmul instead of two.
        out = self.head(torch.cat([cls.unsqueeze(1), patches], dim=1))
        return out[:, 0], out[:, 1:]


def ema_pairs(student: nn.Module, teacher: Teacher) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(teacher, student) parameters paired by module and name: every teacher parameter must
    have the student parameter of the same name and shape (the predictor has no twin)."""
    s_params = dict(student.named_parameters())
    t_list, s_list = [], []
    for name, t in teacher.named_parameters():
        s = s_params.get(name)
        if s is None or s.shape != t.shape:
            found = "missing" if s is None else f"shape {tuple(s.shape)}"
            raise RuntimeError(f"EMA: teacher parameter {name} {tuple(t.shape)} has no student twin ({found})")
        t_list.append(t)
        s_list.append(s.detach())
    return t_list, s_list


class TeacherEMA:
    """θ_t ← m·θ_t + (1−m)·θ_s for each teacher parameter and its namesake in the student.

    The pairs are found once (:func:`ema_pairs`): optimiser steps, checkpoint loads and ``.to``
    on the same device all change parameters in place, so the pairing holds for a whole run and
    the training step does not rebuild two name→parameter dicts every step.
    """

    def __init__(self, student: nn.Module, teacher: Teacher):
        self.t_params, self.s_params = ema_pairs(student, teacher)

    @torch.no_grad()
    def __call__(self, momentum: float) -> None:
        torch._foreach_mul_(self.t_params, momentum)
        torch._foreach_add_(self.t_params, self.s_params, alpha=1.0 - momentum)


def update_teacher(student: nn.Module, teacher: Teacher, momentum: float) -> None:
    """One EMA step (:class:`TeacherEMA`), pairing the parameters anew."""
    TeacherEMA(student, teacher)(momentum)
