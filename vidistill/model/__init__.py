"""Backbone (timm ViT), projection head, predictor, student/teacher pair and its EMA."""

from vidistill.model.backbone import build_backbone, contract_of, patch_size_of, split_tokens
from vidistill.model.head import DINOHead
from vidistill.model.networks import Student, StudentOutputs, Teacher, TeacherEMA, update_teacher
from vidistill.model.predictor import NextFramePredictor

__all__ = [
    "DINOHead",
    "NextFramePredictor",
    "Student",
    "StudentOutputs",
    "Teacher",
    "build_backbone",
    "contract_of",
    "patch_size_of",
    "split_tokens",
    "TeacherEMA",
    "update_teacher",
]
