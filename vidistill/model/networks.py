"""Student and teacher networks and the EMA that ties them (DINO's self-distillation pair)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from vidistill.config import Config
from vidistill.model.backbone import build_backbone, split_tokens
from vidistill.model.head import DINOHead
from vidistill.model.predictor import NextFramePredictor


@dataclass
class StudentOutputs:
    patch_pred: torch.Tensor | None  # (N, P, out_dim): predicted teacher outputs of frame t+Δ
    global_cls: torch.Tensor | None  # (N, out_dim): [CLS] of the global views (DINO baselines)
    local_cls: torch.Tensor | None  # (M, out_dim): [CLS] of the local views


class Student(nn.Module):
    """Backbone (drop-path) → [predictor →] shared head.

    Everything the loss needs is computed in ``forward`` so that DistributedDataParallel sees
    every parameter that gets a gradient (calling sub-modules directly would bypass its hooks).
    """

    def __init__(self, cfg: Config):
        super().__init__()
        m = cfg.model
        self.backbone = build_backbone(m.arch, cfg.data.global_size, drop_path=m.drop_path, model_args=m.model_args)
        dim = self.backbone.embed_dim
        self.head = DINOHead(
            dim, m.out_dim, m.head_hidden_dim, m.head_bottleneck_dim, m.head_layers, m.norm_last_layer
        )
        uses_dense = cfg.objective in ("dense+global", "dense")
        self.predictor = (
            NextFramePredictor(dim, self.backbone.blocks[0].attn.num_heads, m.predictor_depth)
            if uses_dense
            else None
        )
        self.global_through_predictor = m.global_through_predictor and uses_dense

    def forward(
        self,
        global_views: torch.Tensor | None,
        local_views: torch.Tensor | None,
        predict_dense: bool,
    ) -> StudentOutputs:
        patch_pred = global_cls = local_cls = None
        if global_views is not None:
            cls, patches = split_tokens(self.backbone, self.backbone.forward_features(global_views))
            if predict_dense:
                patch_pred = self.head(self.predictor(patches))
            else:
                global_cls = self.head(cls)
        if local_views is not None:
            tokens = self.backbone.forward_features(local_views)
            if self.global_through_predictor:
                tokens = torch.cat([tokens[:, :1], self.predictor(tokens[:, 1:])], dim=1)
            local_cls = self.head(split_tokens(self.backbone, tokens)[0])
        return StudentOutputs(patch_pred, global_cls, local_cls)


class Teacher(nn.Module):
    """Backbone + head, an EMA of the student's; no predictor, no drop-path, no gradients."""

    def __init__(self, student: Student):
        super().__init__()
        self.backbone = copy.deepcopy(student.backbone)
        for block in self.backbone.blocks:  # DINO's teacher has no stochastic depth
            block.drop_path1 = nn.Identity()
            block.drop_path2 = nn.Identity()
        self.head = copy.deepcopy(student.head)
        for p in self.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def forward(self, global_views: torch.Tensor, with_patches: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """[CLS] outputs (N, out_dim) and, if asked, patch outputs (N, P, out_dim)."""
        cls, patches = split_tokens(self.backbone, self.backbone.forward_features(global_views))
        if not with_patches:
            return self.head(cls), None
        # One head call over [CLS] and patches together: one big matmul instead of two.
        out = self.head(torch.cat([cls.unsqueeze(1), patches], dim=1))
        return out[:, 0], out[:, 1:]


@torch.no_grad()
def update_teacher(student: nn.Module, teacher: Teacher, momentum: float) -> None:
    """θ_t ← m·θ_t + (1−m)·θ_s over the shared parameters (backbone and head)."""
    s_params = [p.detach() for n, p in student.named_parameters() if not n.startswith("predictor.")]
    t_params = list(teacher.parameters())
    if len(s_params) != len(t_params):  # pragma: no cover - structural invariant
        raise RuntimeError("student and teacher parameters do not line up")
    torch._foreach_mul_(t_params, momentum)
    torch._foreach_add_(t_params, s_params, alpha=1.0 - momentum)
