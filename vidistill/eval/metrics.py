"""Metrics of the probes: confusion-matrix mIoU, depth errors, in plain torch."""

from __future__ import annotations

import math

import torch


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C) int64 counts, rows = ground truth, columns = prediction; target < 0 is ignored."""
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    keep = (target >= 0) & (target < num_classes)
    idx = target[keep] * num_classes + pred[keep].clamp(0, num_classes - 1)
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes).cpu()


def segmentation_scores(conf: torch.Tensor) -> dict:
    """mIoU over the classes with a non-empty union (in the val ground truth or predicted),
    pixel accuracy, and per-class IoU (None for a class absent from both). Fractions in [0, 1]."""
    conf = conf.double()
    tp = conf.diag()
    union = conf.sum(0) + conf.sum(1) - tp
    present = union > 0
    iou = torch.where(present, tp / union.clamp(min=1), torch.zeros_like(tp))
    total = conf.sum()
    return {
        "miou": float(iou[present].mean()) if present.any() else 0.0,
        "pixel_accuracy": float(tp.sum() / total) if total > 0 else 0.0,
        "per_class_iou": [float(v) if p else None for v, p in zip(iou.tolist(), present.tolist(), strict=True)],
        "classes_scored": int(present.sum()),
    }


class DepthMeter:
    """Accumulates depth errors over valid pixels (target > 0) of many images.

    rmse: sqrt of the mean squared error in metres over all valid pixels; delta1: fraction of
    valid pixels with max(pred/gt, gt/pred) < 1.25; abs_rel: mean |pred - gt| / gt; rmse_log:
    RMSE of natural-log depth.
    """

    def __init__(self) -> None:
        self.n = 0
        self.sq = 0.0
        self.sq_log = 0.0
        self.abs_rel = 0.0
        self.delta1 = 0

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        valid = target > 0
        p = pred[valid].double().clamp(min=1e-6)
        g = target[valid].double()
        self.n += int(g.numel())
        self.sq += float(((p - g) ** 2).sum())
        self.sq_log += float(((p.log() - g.log()) ** 2).sum())
        self.abs_rel += float(((p - g).abs() / g).sum())
        self.delta1 += int((torch.maximum(p / g, g / p) < 1.25).sum())

    def result(self) -> dict:
        if self.n == 0:
            return {"rmse": math.nan, "rmse_log": math.nan, "abs_rel": math.nan, "delta1": math.nan, "pixels": 0}
        return {
            "rmse": math.sqrt(self.sq / self.n),
            "rmse_log": math.sqrt(self.sq_log / self.n),
            "abs_rel": self.abs_rel / self.n,
            "delta1": self.delta1 / self.n,
            "pixels": self.n,
        }
