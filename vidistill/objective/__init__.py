"""The losses of the method (eq. 1 and 2), DINO's baseline loss, centring and temperature."""

from vidistill.objective.centring import (
    CENTRINGS,
    Centre,
    SinkhornKnoppCentre,
    build_centre,
    sinkhorn_knopp_log_scaling,
)
from vidistill.objective.cross_entropy import DistillationStats, soft_cross_entropy, teacher_probs
from vidistill.objective.dense import DenseNextFrameLoss
from vidistill.objective.global_loss import GlobalLoss, MultiCropDINOLoss
from vidistill.objective.method import FrameDINO, NextFrameDistillation, build_objective

__all__ = [
    "CENTRINGS",
    "Centre",
    "DenseNextFrameLoss",
    "DistillationStats",
    "FrameDINO",
    "GlobalLoss",
    "MultiCropDINOLoss",
    "NextFrameDistillation",
    "SinkhornKnoppCentre",
    "build_centre",
    "build_objective",
    "sinkhorn_knopp_log_scaling",
    "soft_cross_entropy",
    "teacher_probs",
]
