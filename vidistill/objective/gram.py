"""Gram anchoring (DINOv3, Siméoni et al. 2025, sec. 4.2): keep the patch-to-patch similarity
structure of the student close to that of a frozen "Gram teacher", here the init itself.

For one image with L2-normalised patch features X_S (student) and X_G (frozen init), both P×D,

    L_Gram = ‖ X_S X_Sᵀ − X_G X_Gᵀ ‖²_F / P²

(DINOv3 writes the Frobenius norm; its code averages the squared differences, as here, so the
weight does not depend on the grid size). Only the *relations* between patches are anchored,
not the features themselves: the student may rotate or re-scale its feature space to fit the
new video, but what was similar to what in the init stays so. At step 0 the student's weights
are the init's, yet the loss is not 0: the student runs with drop-path and the anchor without,
so their patch features differ (with drop-path 0 it is 0); it grows as the student's patch
geometry moves away from the init's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vidistill.config import Config, ModelConfig
from vidistill.model.backbone import build_backbone, split_tokens


def gram_matrix(patches: torch.Tensor) -> torch.Tensor:
    """(N, P, D) patch features -> (N, P, P) cosine similarities."""
    x = F.normalize(patches.float(), dim=-1)
    return x @ x.transpose(1, 2)


def gram_loss(student_patches: torch.Tensor, anchor_patches: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the two Gram matrices (the equation above, averaged over N)."""
    return (gram_matrix(student_patches) - gram_matrix(anchor_patches)).pow(2).mean()


class GramAnchor(nn.Module):
    """The frozen init (the backbone's weights at step 0, no drop-path) and the loss against it."""

    def __init__(self, model: ModelConfig, image_size: int, backbone: nn.Module):
        super().__init__()
        self.anchor = build_backbone(model.arch, image_size, 0.0, model.model_args)
        self.anchor.load_state_dict(backbone.state_dict())
        self.anchor.requires_grad_(False)
        self.anchor.eval()

    def train(self, mode: bool = True) -> GramAnchor:
        return super().train(False)

    def forward(self, student_patches: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            _, anchor_patches = split_tokens(self.anchor, self.anchor.forward_features(views))
        return gram_loss(student_patches, anchor_patches)


class GramAnchored(nn.Module):
    """Any objective + ``weight`` · L_Gram on the global views the student encoded.

    The wrapped objective calls the student as usual; this records which global views went in
    and the patch tokens that came out (``StudentOutputs.global_patches``), so the anchor costs
    one extra no-grad forward of the frozen init and no second student forward. The frozen init
    is part of this module's state, so a checkpoint carries it and a resume needs no init.
    """

    def __init__(self, objective: nn.Module, cfg: Config, backbone: nn.Module):
        super().__init__()
        self.objective = objective
        self.gram = GramAnchor(cfg.model, cfg.data.global_size, backbone)
        self.weight = float(cfg.adapt.gram_weight)

    def forward(self, student, teacher, globals_, locals_, teacher_temp):
        seen: list[tuple[torch.Tensor, torch.Tensor]] = []

        def recording_student(global_views, local_views, *args, **kwargs):
            out = student(global_views, local_views, *args, **kwargs)
            if global_views is not None and out.global_patches is not None:
                seen.append((global_views, out.global_patches))
            return out

        loss, stats = self.objective(recording_student, teacher, globals_, locals_, teacher_temp)
        if not seen:
            raise RuntimeError("Gram anchoring needs the student to encode global views (not objective 'global')")
        views, patches = seen[0]
        l_gram = self.gram(patches, views)
        stats = {**stats, "gram/loss": l_gram.detach()}
        return loss + self.weight * l_gram, stats


def with_gram_anchor(objective: nn.Module, cfg: Config, backbone: nn.Module) -> nn.Module:
    """``objective`` anchored to ``backbone``'s current weights (the init) when the weight is > 0;
    the frozen copy is only built then."""
    return GramAnchored(objective, cfg, backbone) if cfg.adapt.gram_weight > 0 else objective
