"""The three evaluations end to end: read a dataset, extract frozen features once, fit, score.

Each returns a JSON-ready report. Units: ``miou``, ``pixel_accuracy``, ``per_class_iou``,
``delta1`` and ``top1`` in percent (as the paper reports them); depth errors in metres.

Resolution: images go to the encoder as they are, and its contract's resize rule brings them to
its (H, W) input (default: its training or exported size), the same code a robot runs; label /
depth maps are cropped (or padded with "ignore") to the region that rule places, at their own
resolution, so the labels cover what the encoder sees. Training targets are resized (nearest) to ``label_size`` (default
the input size) so they stack in one cached tensor; validation is scored at each (cropped)
annotation's own resolution (the logits are upsampled bilinearly to it).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from vidistill.contract import as_hw
from vidistill.errors import VidistillError
from vidistill.eval import probe
from vidistill.eval.datasets import (
    DenseSplit,
    dense_split,
    image_folder,
    read_depth_map,
    read_label_map,
)
from vidistill.eval.features import read_rgb, resize_nearest, to_input_aspect
from vidistill.eval.knn import weighted_knn_predict
from vidistill.eval.metrics import segmentation_scores
from vidistill.runtime.encoder import Encoder

log = logging.getLogger(__name__)

# Cached features are kept in half precision: a (20k, 384, 14, 14) ADE20K training set is 3 GB
# instead of 6, and a linear probe does not notice.
CACHE_DTYPE = torch.float16


@dataclass
class ProbeSettings:
    iters: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batchnorm: bool = True
    label_size: int | tuple[int, int] | None = None  # S or (H, W); default: the encoder's input size
    seed: int = 0
    extract_batch_size: int = 32


def _encoder_info(encoder: Encoder) -> dict:
    return {
        "encoder": str(encoder.source),
        "model": encoder.contract.model_name,
        "image_size": list(encoder.image_size),
        "backend": encoder.backend,
        "resize": encoder.contract.resize,
        "patch_size": encoder.patch_size,
        "grid": list(encoder.grid_size),
        "embed_dim": encoder.embed_dim,
    }


def _features(encoder: Encoder, images: list[Path], batch_size: int, desc: str) -> torch.Tensor:
    _, patches = encoder.extract(
        (read_rgb(p) for p in images), batch_size=batch_size, total=len(images), desc=desc, dtype=CACHE_DTYPE
    )
    return encoder.patch_maps(patches)


def _ade_targets(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """ADE labels (0 = ignore, 1..N) -> int16 targets 0..N-1 with IGNORE (-1); > num_classes ignored."""
    t = labels.astype(np.int64) - 1
    t[(t < 0) | (t >= num_classes)] = probe.IGNORE
    return torch.from_numpy(t.astype(np.int16))


def _log_sizes(train: DenseSplit, val: DenseSplit) -> None:
    log.info("%d training / %d validation images", len(train), len(val))


def segmentation_probe(
    encoder: Encoder, data: str | Path, settings: ProbeSettings, num_classes: int | None = None
) -> dict:
    """The paper's Fast-LP on an ADE20K-layout dataset: a report with mIoU (percent)."""
    t0 = time.perf_counter()
    train, val = dense_split(data, "training"), dense_split(data, "validation")
    _log_sizes(train, val)
    label_size = as_hw(settings.label_size or encoder.image_size)
    train_labels = [to_input_aspect(encoder, read_label_map(p), label=True) for p in train.targets]
    val_labels = [to_input_aspect(encoder, read_label_map(p), label=True) for p in val.targets]
    seen = max(int(lab.max()) for lab in train_labels + val_labels)
    n_cls = int(num_classes or seen)
    if n_cls < 1:
        raise VidistillError(f"{data}: every annotation pixel is 0 (ignore); no class to probe")
    if num_classes and seen > num_classes:
        log.warning("labels up to %d seen but --num-classes %d: higher labels are ignored", seen, num_classes)
    y_train = torch.stack([_ade_targets(resize_nearest(lab.astype(np.uint16), label_size), n_cls)
                           for lab in train_labels])
    y_val = [_ade_targets(lab, n_cls) for lab in val_labels]

    t1 = time.perf_counter()
    x_train = _features(encoder, train.images, settings.extract_batch_size, "train features")
    x_val = _features(encoder, val.images, settings.extract_batch_size, "val features")
    t2 = time.perf_counter()
    head = probe.train_segmentation_head(
        x_train, y_train, n_cls, batchnorm=settings.batchnorm, seed=settings.seed,
        iters=settings.iters, batch_size=settings.batch_size, lr=settings.lr,
        weight_decay=settings.weight_decay, device=encoder.device,
    )
    t3 = time.perf_counter()
    # A class with no training pixel (a label id the split skips) cannot be learned: its logit is
    # the head's initial bias, which on weak features wins some pixels and scores that class's
    # IoU as 0, moving the mean by 1/C (random-init probes swung 50-61 mIoU on the sim scene B).
    trained = torch.bincount(y_train[y_train >= 0].long().flatten(), minlength=n_cls)[:n_cls] > 0
    conf = probe.segmentation_confusion(head, x_val, y_val, n_cls, device=encoder.device, classes=trained)
    scores = segmentation_scores(conf)
    t4 = time.perf_counter()
    pct = lambda v: None if v is None else 100.0 * v  # noqa: E731
    return {
        "task": "segmentation",
        "data": str(data),
        **_encoder_info(encoder),
        "label_size": list(label_size),
        "num_classes": n_cls,
        "train_images": len(train),
        "val_images": len(val),
        "settings": asdict(settings) | {"label_size": list(label_size)},
        "miou": pct(scores["miou"]),
        "pixel_accuracy": pct(scores["pixel_accuracy"]),
        "classes_scored": scores["classes_scored"],
        "untrained_classes": [c + 1 for c in range(n_cls) if not trained[c]],  # label ids never predicted
        # keyed by the dataset's label id (1..N), null for a class absent from GT and prediction
        "per_class_iou": {str(c + 1): pct(v) for c, v in enumerate(scores["per_class_iou"])},
        "confusion": conf.tolist() if n_cls <= 64 else None,
        "units": {"miou": "percent", "pixel_accuracy": "percent", "per_class_iou": "percent"},
        "seconds": {"read_labels": t1 - t0, "features": t2 - t1, "fit": t3 - t2, "score": t4 - t3},
    }


def depth_probe(encoder: Encoder, data: str | Path, settings: ProbeSettings) -> dict:
    """Linear log-depth probe on ``depth/{training,validation}/*.png`` (uint16 mm, 0 invalid)."""
    t0 = time.perf_counter()
    train, val = dense_split(data, "training", "depth"), dense_split(data, "validation", "depth")
    _log_sizes(train, val)
    label_size = as_hw(settings.label_size or encoder.image_size)
    depth = lambda p: to_input_aspect(encoder, read_depth_map(p), label=True)  # noqa: E731
    d_train = torch.stack([torch.from_numpy(resize_nearest(depth(p), label_size)) for p in train.targets])
    d_val = [torch.from_numpy(depth(p)) for p in val.targets]
    if not (d_train > 0).any():
        raise VidistillError(f"{data}: no valid (non-zero) depth pixel in depth/training/")
    if not any((d > 0).any() for d in d_val):
        raise VidistillError(f"{data}: no valid (non-zero) depth pixel in depth/validation/")
    t1 = time.perf_counter()
    x_train = _features(encoder, train.images, settings.extract_batch_size, "train features")
    x_val = _features(encoder, val.images, settings.extract_batch_size, "val features")
    t2 = time.perf_counter()
    head = probe.train_depth_head(
        x_train, d_train, batchnorm=settings.batchnorm, seed=settings.seed,
        iters=settings.iters, batch_size=settings.batch_size, lr=settings.lr,
        weight_decay=settings.weight_decay, device=encoder.device,
    )
    t3 = time.perf_counter()
    scores = probe.evaluate_depth(head, x_val, d_val, device=encoder.device)
    t4 = time.perf_counter()
    return {
        "task": "depth",
        "data": str(data),
        **_encoder_info(encoder),
        "label_size": list(label_size),
        "train_images": len(train),
        "val_images": len(val),
        "settings": asdict(settings) | {"label_size": list(label_size)},
        "rmse": scores["rmse"],
        "rmse_log": scores["rmse_log"],
        "abs_rel": scores["abs_rel"],
        "delta1": 100.0 * scores["delta1"],
        "valid_pixels": scores["pixels"],
        "units": {"rmse": "metres", "rmse_log": "log metres", "abs_rel": "fraction", "delta1": "percent"},
        "seconds": {"read_depth": t1 - t0, "features": t2 - t1, "fit": t3 - t2, "score": t4 - t3},
    }


def knn_eval(
    encoder: Encoder, data: str | Path, k: int = 20, temperature: float = 0.07, extract_batch_size: int = 32
) -> dict:
    """DINO's weighted k-NN on [CLS] features of an image-folder dataset: top-1 in percent."""
    t0 = time.perf_counter()
    classes, train, val = image_folder(data)
    log.info("%d classes, %d training / %d validation images", len(classes), len(train.images), len(val.images))

    def cls_features(paths: list[Path], desc: str) -> torch.Tensor:
        feats, _ = encoder.extract(
            (read_rgb(p) for p in paths), batch_size=extract_batch_size, total=len(paths), desc=desc
        )
        return feats

    x_train, x_val = cls_features(train.images, "train features"), cls_features(val.images, "val features")
    y_train, y_val = torch.tensor(train.labels), torch.tensor(val.labels)
    pred = weighted_knn_predict(x_train, y_train, x_val, len(classes), k=k, temperature=temperature)
    correct = pred == y_val
    per_class = {
        name: (100.0 * float(correct[y_val == i].float().mean()) if (y_val == i).any() else None)
        for i, name in enumerate(classes)
    }
    return {
        "task": "knn",
        "data": str(data),
        **_encoder_info(encoder),
        "k": k,
        "temperature": temperature,
        "classes": classes,
        "train_images": len(train.images),
        "val_images": len(val.images),
        "top1": 100.0 * float(correct.float().mean()),
        "per_class_top1": per_class,
        "units": {"top1": "percent"},
        "seconds": {"total": time.perf_counter() - t0},
    }
