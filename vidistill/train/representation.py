"""What the teacher's features look like, beyond the loss: the signs of partial collapse.

The loss and the target entropy say whether the teacher's *outputs* are sharp. They cannot say
whether the backbone underneath still describes the image: a dense next-frame objective can be
solved by patch features that encode only *where* a patch is (every frame of a clip shares its
crop geometry, so position alone predicts the next frame's targets), and a [CLS] objective by a
few directions. Two numbers show it, measured every ``train.monitor_every`` steps on the batch's
global views through the teacher backbone (no gradient, fp32):

* ``repr/patch_rank``, ``repr/cls_rank``: effective rank (Roy & Vetterli 2007), exp of the
  entropy of the normalised singular values of the centred features; between 1 (one direction)
  and the feature width. Falling over a run = the features collapse onto fewer directions.
* ``repr/position_share``: the share of the patch features' variance that the patch position
  alone explains (the variance of the per-position mean over all images, over the total). A
  random ViT sits near its position embedding's share; a run drifting towards 1 is learning
  position codes, not content. With N images, chance alone gives about 1/N.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vidistill.model.backbone import split_tokens
from vidistill.objective.cross_entropy import entropy


def effective_rank(features: torch.Tensor) -> float:
    """exp H(σ / Σσ) of the centred (N, D) features' singular values σ."""
    x = features.float().reshape(-1, features.shape[-1])
    if not bool(torch.isfinite(x).all()):
        return math.nan  # a diverged step: the loss check that follows stops the run and says so
    x = x - x.mean(0, keepdim=True)
    s = torch.linalg.svdvals(x)
    if float(s.sum()) <= 0:
        return 1.0
    return float(torch.exp(entropy(s / s.sum())))


def position_share(patches: torch.Tensor) -> float:
    """Var_p(E_n x[n, p]) / Var(x) for (N, P, D) patch features."""
    x = patches.float()
    x = x - x.mean(dim=(0, 1), keepdim=True)
    total = x.pow(2).sum(-1).mean()
    if float(total) <= 0:
        return 0.0
    return float(x.mean(0).pow(2).sum(-1).mean() / total)


@torch.no_grad()
def representation_stats(backbone: nn.Module, images: torch.Tensor) -> dict[str, float]:
    """The numbers above for ``images`` (N, 3, H, W) through ``backbone`` (N ≥ 2)."""
    with torch.autocast(images.device.type, enabled=False):
        cls, patches = split_tokens(backbone, backbone.forward_features(images.float()))
    return {
        "repr/patch_rank": effective_rank(patches),
        "repr/cls_rank": effective_rank(cls),
        "repr/position_share": position_share(patches),
    }
