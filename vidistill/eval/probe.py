"""Linear probes on cached frozen patch features (the paper's Fast-LP and a depth analogue).

Everything here works on tensors already in memory: features ``(N, D, h, w)`` extracted ONCE
from the frozen backbone (see ``tasks.py``), targets at a label resolution ``(N, H, W)``.
Training a 1x1 conv on cached features costs milliseconds per step, so the 1000 iterations at
batch 64 of the paper's fast probe run in seconds to minutes on a CPU.

- Segmentation: optional BatchNorm + 1x1 conv -> C logits, upsampled bilinearly to the label
  map, cross-entropy with ignore index -1 (callers map ADE's label 0 to -1 and 1..N to 0..N-1).
- Depth: optional BatchNorm + 1x1 conv -> log-depth, upsampled bilinearly, squared error of
  log-depth on valid pixels (depth > 0); predictions are ``exp`` of it, in metres.

AdamW with a cosine learning rate (short linear warm-up) and no augmentation.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vidistill.eval.metrics import DepthMeter, confusion_matrix

IGNORE = -1


class LinearHead(nn.Module):
    """Optional BatchNorm + 1x1 conv on (B, D, h, w) features; logits resized to ``size``."""

    def __init__(self, dim: int, out: int, batchnorm: bool = True) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(dim) if batchnorm else nn.Identity()
        self.conv = nn.Conv2d(dim, out, kernel_size=1)
        nn.init.normal_(self.conv.weight, std=0.01)
        nn.init.zeros_(self.conv.bias)

    def forward(self, feats: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        out = self.conv(self.bn(feats))
        if size is not None and tuple(out.shape[-2:]) != tuple(size):
            out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
        return out


def _lr_at(step: int, total: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * t))


def fit_head(
    head: nn.Module,
    feats: torch.Tensor,
    targets: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor | None],
    iters: int = 1000,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    device: str | torch.device = "cpu",
    desc: str = "probe",
) -> list[float]:
    """Train ``head`` on random batches of cached ``feats``/``targets`` (CPU tensors of any
    float dtype; batches are moved to ``device`` in float32). ``loss_fn(output, target)`` may
    return None for a batch with no valid pixel (it is skipped). Returns the loss curve."""
    from tqdm import tqdm

    n = feats.shape[0]
    if n == 0:
        raise ValueError("no training samples")
    batch_size = min(batch_size, n)
    head.to(device).train()
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    warmup = min(50, iters // 10)
    order, pos = torch.randperm(n, generator=gen), 0
    losses: list[float] = []
    size = tuple(targets.shape[-2:])
    for step in tqdm(range(iters), desc=desc, unit="it", disable=None, leave=False):
        if pos + batch_size > n:  # a new epoch: reshuffle (each batch holds distinct samples)
            order, pos = torch.randperm(n, generator=gen), 0
        idx = order[pos : pos + batch_size]
        pos += batch_size
        x = feats[idx].to(device, torch.float32, non_blocking=True)
        y = targets[idx].to(device, non_blocking=True)
        loss = loss_fn(head(x, size), y)
        if loss is None:
            continue
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, iters, lr, warmup)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def _with_seed(seed: int, make: Callable[[], nn.Module]) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


# ---- segmentation ---------------------------------------------------------------------------


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
    target = target.long()
    if not (target != IGNORE).any():
        return None
    return F.cross_entropy(logits, target, ignore_index=IGNORE)


def train_segmentation_head(
    feats: torch.Tensor,
    targets: torch.Tensor,
    num_classes: int,
    batchnorm: bool = True,
    seed: int = 0,
    **fit_kw,
) -> LinearHead:
    """Fit the Fast-LP head. ``targets``: (N, H, W) class indices 0..C-1, IGNORE (-1) elsewhere."""
    head = _with_seed(seed, lambda: LinearHead(feats.shape[1], num_classes, batchnorm))
    fit_head(head, feats, targets, segmentation_loss, seed=seed, desc="seg probe", **fit_kw)
    return head.eval()


@torch.no_grad()
def predict_segmentation(
    head: LinearHead,
    feats: torch.Tensor,
    sizes: list[tuple[int, int]],
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    classes: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """Per-image (H_i, W_i) class-index predictions, logits upsampled to each label's size.

    ``classes`` (C,) bool: the classes the head may predict (those it had training pixels of);
    the logit of a class it never saw is only its initial bias and says nothing about the image.
    """
    head.to(device).eval()
    preds: list[torch.Tensor] = []
    for start in range(0, feats.shape[0], batch_size):
        logits = head(feats[start : start + batch_size].to(device, torch.float32))
        for i, lg in enumerate(logits):
            size = sizes[start + i]
            up = F.interpolate(lg[None], size=size, mode="bilinear", align_corners=False)[0]
            if classes is not None:  # after the upsampling: its zero weights times -inf would be NaN
                up = up.masked_fill(~classes.to(up.device)[:, None, None], float("-inf"))
            preds.append(up.argmax(0).cpu())
    return preds


def segmentation_confusion(
    head: LinearHead,
    feats: torch.Tensor,
    targets: list[torch.Tensor],
    num_classes: int,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    classes: torch.Tensor | None = None,
) -> torch.Tensor:
    """Confusion matrix of the head's predictions against per-image targets (IGNORE skipped);
    ``classes`` as in :func:`predict_segmentation`."""
    preds = predict_segmentation(head, feats, [tuple(t.shape[-2:]) for t in targets], batch_size, device, classes)
    conf = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for p, t in zip(preds, targets, strict=True):
        conf += confusion_matrix(p, t, num_classes)
    return conf


# ---- depth ----------------------------------------------------------------------------------


def depth_loss(log_pred: torch.Tensor, depth: torch.Tensor) -> torch.Tensor | None:
    """Squared error of log-depth over valid pixels (depth > 0, metres)."""
    valid = depth > 0
    if not valid.any():
        return None
    return ((log_pred[:, 0][valid] - depth[valid].log()) ** 2).mean()


def train_depth_head(
    feats: torch.Tensor,
    depths: torch.Tensor,
    batchnorm: bool = True,
    seed: int = 0,
    **fit_kw,
) -> LinearHead:
    """Fit a linear log-depth head. ``depths``: (N, H, W) metres, 0 = invalid."""
    head = _with_seed(seed, lambda: LinearHead(feats.shape[1], 1, batchnorm))
    valid = depths > 0
    if not valid.any():
        raise ValueError("no valid depth pixel in the training set")
    with torch.no_grad():  # start at the mean log-depth: the probe only has to learn the rest
        head.conv.bias.fill_(float(depths[valid].log().mean()))
    fit_head(head, feats, depths, depth_loss, seed=seed, desc="depth probe", **fit_kw)
    return head.eval()


@torch.no_grad()
def evaluate_depth(
    head: LinearHead,
    feats: torch.Tensor,
    depths: list[torch.Tensor],
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> dict:
    """Depth metrics (metres) of the head against per-image (H_i, W_i) depth maps."""
    head.to(device).eval()
    meter = DepthMeter()
    for start in range(0, feats.shape[0], batch_size):
        out = head(feats[start : start + batch_size].to(device, torch.float32))
        for i, lg in enumerate(out):
            gt = depths[start + i]
            up = F.interpolate(lg[None], size=tuple(gt.shape[-2:]), mode="bilinear", align_corners=False)
            meter.update(up[0, 0].exp().cpu(), gt)
    return meter.result()
