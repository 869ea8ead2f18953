"""Adapting a pretrained backbone without tearing it apart.

* Layer-wise lr decay (BEiT / DINOv2 fine-tuning): the layers nearest the pixels, the most
  generic, move least. Layers as timm's ``param_groups_layer_decay`` splits a ViT (embeddings
  and register tokens 0, block i -> i+1, final norm with the last block), so every ViT family
  is split the same way.
* Head warm-up: the projection head and predictor start random; their first gradients through
  the backbone are noise that would overwrite the pretrained features. For the first steps the
  backbone gets no update at all (its gradients are dropped, so AdamW neither steps nor decays
  it), then its lr ramps up from 0 over as many steps (``Schedules.backbone_lr_factor``).
* Gram anchoring (DINOv3): the student's patch-to-patch similarities are kept close to those of
  the frozen init (the equation: :mod:`vidistill.objective.gram`). The objective hands the
  anchor the patch tokens the student made of its global views; one student forward serves both.
* Feature drift: linear CKA and centred cosine between the teacher's features and the init's on
  a fixed batch of the run's own frames, prepared as the exported encoder prepares a camera frame,
  logged every N steps next to the collapse signals.
"""

from __future__ import annotations

import logging
import re

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vidistill.config import AdaptConfig, Config
from vidistill.contract import EncoderContract
from vidistill.model.backbone import build_backbone, split_tokens
from vidistill.objective.gram import gram_loss

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ layer decay
# The embeddings (layer 0): class, register and distillation tokens, position and patch embeddings.
# timm's own group_matcher left reg_token out of them before timm 1.0.28 (it then fell in the
# last layer, at the highest lr): the grouping is vidistill's, whatever timm is installed.
STEM = re.compile(r"^(cls_token|reg_token|dist_token|mask_token|pos_embed|patch_embed|norm_pre)\b")
BLOCK = re.compile(r"^blocks\.(\d+)\.")


def backbone_layer_ids(backbone: nn.Module) -> tuple[dict[str, int], int]:
    """{parameter name: layer id} and the number of layers: the embeddings 0, block i -> i + 1,
    the final norm (and anything after the blocks) with the last block, as timm's
    ``param_groups_layer_decay`` splits a ViT."""
    num_layers = len(backbone.blocks) + 1
    layer_of = {}
    for name, _ in backbone.named_parameters():
        block = BLOCK.match(name)
        layer_of[name] = 0 if STEM.match(name) else int(block.group(1)) + 1 if block else num_layers - 1
    return layer_of, num_layers


def adaptation_param_groups(student: nn.Module, adapt: AdaptConfig) -> list[dict] | None:
    """AdamW groups with an ``lr_scale`` per backbone layer, backbone groups marked ``backbone``
    (for the head warm-up's lr ramp); None when none of this is asked for (the plain groups of
    ``optimizer.param_groups`` then apply).

    Backbone layer i of L: ``backbone_lr_scale · layer_decay^(L−1−i)`` (the last block and the
    final norm at ``backbone_lr_scale``); heads and predictor: 1. Weight decay on matrices only,
    as everywhere in vidistill.
    """
    if adapt.layer_decay == 1.0 and adapt.backbone_lr_scale == 1.0 and adapt.head_warmup_fraction == 0:
        return None
    layer_of, num_layers = backbone_layer_ids(student.backbone)
    groups: dict[tuple[bool, float, bool], dict] = {}  # (in backbone, lr scale, weight decay)
    for name, p in student.named_parameters():
        if not p.requires_grad:
            continue
        in_backbone = name.startswith("backbone.")
        if in_backbone:
            layer = layer_of.get(name[len("backbone.") :], num_layers - 1)
            scale = adapt.backbone_lr_scale * adapt.layer_decay ** (num_layers - 1 - layer)
        else:
            scale = 1.0
        decay = p.ndim > 1
        group = groups.setdefault(
            (in_backbone, scale, decay), {"params": [], "lr_scale": scale, "apply_wd": decay, "backbone": in_backbone}
        )
        if not decay:
            group["weight_decay"] = 0.0
        group["params"].append(p)
    return list(groups.values())


# ------------------------------------------------------------------------------ head warm-up
def cancel_backbone_gradients(student: nn.Module) -> None:
    """The backbone stays exactly as it is this step (AdamW skips parameters without gradient)."""
    for p in student.backbone.parameters():
        p.grad = None


# ------------------------------------------------------------------------------ Gram anchor
class GramAnchor(nn.Module):
    """The frozen init (the backbone's weights at step 0, no drop-path) and the Gram loss of the
    student's patch tokens against its own on the same views."""

    def __init__(self, cfg: Config, backbone: nn.Module):
        super().__init__()
        self.weight = float(cfg.adapt.gram_weight)
        self.anchor = build_backbone(cfg.model.arch, cfg.data.global_size, 0.0, cfg.model.model_args)
        self.anchor.load_state_dict(backbone.state_dict())
        self.anchor.requires_grad_(False)
        self.anchor.eval()

    def train(self, mode: bool = True) -> GramAnchor:
        return super().train(False)

    def loss(self, views: torch.Tensor, student_patches: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            _, anchor_patches = split_tokens(self.anchor, self.anchor.forward_features(views))
        return gram_loss(student_patches, anchor_patches)

    def forward(self, views: torch.Tensor, student_patches: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """The weighted term an objective adds (its ``anchor``), and its diagnostics."""
        l_gram = self.loss(views, student_patches)
        return self.weight * l_gram, {"gram/loss": l_gram.detach()}


class GramAnchored(nn.Module):
    """An objective with the Gram anchor passed to it. The frozen init is part of this module's
    state, so a checkpoint carries it and a resume needs no init."""

    def __init__(self, objective: nn.Module, gram: GramAnchor):
        super().__init__()
        self.objective, self.gram = objective, gram

    def forward(self, student, teacher, globals_, locals_, teacher_temp):
        return self.objective(student, teacher, globals_, locals_, teacher_temp, anchor=self.gram)


def with_gram_anchor(objective: nn.Module, cfg: Config, backbone: nn.Module) -> nn.Module:
    """``objective`` anchored to ``backbone``'s current weights (the init) when ``adapt.gram_weight``
    is > 0; the frozen copy is only built then."""
    return GramAnchored(objective, GramAnchor(cfg, backbone)) if cfg.adapt.gram_weight > 0 else objective


# ------------------------------------------------------------------------------ feature drift
def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al. 2019) of two sets of features of the same N samples, (N, D1)
    and (N, D2): 1 when one is a rotation and/or a global scale of the other, lower as the
    relations between samples change. Each feature is centred over the samples, so the direction
    every token shares (which makes an uncentred cosine read ~1 whatever happens) does not count."""
    x = x.reshape(-1, x.shape[-1]).double()
    y = y.reshape(-1, y.shape[-1]).double()
    x, y = x - x.mean(0), y - y.mean(0)
    denom = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    return float(torch.linalg.matrix_norm(y.T @ x) ** 2 / denom) if denom > 0 else float("nan")


def centred_cosine(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean cosine between matching rows of (N, D) ``x`` and ``y`` after each set has its own mean
    row removed: 1 = every sample sits where it sat relative to the others."""
    x = x.reshape(-1, x.shape[-1]).double()
    y = y.reshape(-1, y.shape[-1]).double()
    return F.cosine_similarity(x - x.mean(0), y - y.mean(0), dim=-1).mean().item()


def probe_pixels(dataset, count: int, contract: EncoderContract) -> torch.Tensor:
    """The first frame of ``count`` clips spread over the run's video, prepared exactly as the
    exported encoder prepares a camera frame (the contract's resize rule and normalisation,
    ``vidistill.runtime.preprocess``): (N, 3, H, W)."""
    from vidistill.runtime.preprocess import as_image_batch, preprocess_numpy

    n = max(1, min(count, len(dataset)))
    clip_ids = np.linspace(0, len(dataset) - 1, n).round().astype(int)
    frames = [dataset.frames(int(c))[0] for c in clip_ids]
    for source in dataset.sources:  # the training process keeps no decoder open (workers open their own)
        source.close()
    return torch.from_numpy(preprocess_numpy(as_image_batch(frames), contract))


class FeatureDriftProbe:
    """How far the teacher's features have moved from the init, on a fixed batch of frames.

    ``drift/patch_cka``: linear CKA between the teacher's and the init's patch tokens over all
    tokens of the batch (1 = the same relations between patches); ``drift/patch_cos`` and
    ``drift/cls_cos``: centred cosine per patch token / per frame's [CLS] (1 = not moved). The
    init's features are computed once (step 0) and kept in the checkpoint with the frames, so a
    resumed run measures against the same init.
    """

    def __init__(self, pixels: torch.Tensor, init_cls: torch.Tensor, init_patches: torch.Tensor):
        self.pixels, self.init_cls, self.init_patches = pixels, init_cls, init_patches

    @staticmethod
    @torch.no_grad()
    def features(backbone: nn.Module, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        device = next(backbone.parameters()).device
        was_training = backbone.training
        backbone.eval()
        try:
            cls, patches = split_tokens(backbone, backbone.forward_features(pixels.to(device)))
        finally:
            backbone.train(was_training)
        return cls.float().cpu(), patches.float().cpu()

    @classmethod
    def at_init(cls, backbone: nn.Module, pixels: torch.Tensor) -> FeatureDriftProbe:
        return cls(pixels, *cls.features(backbone, pixels))

    def measure(self, backbone: nn.Module) -> dict[str, float]:
        cls, patches = self.features(backbone, self.pixels)
        return {
            "drift/patch_cka": linear_cka(patches, self.init_patches),
            "drift/patch_cos": centred_cosine(patches, self.init_patches),
            "drift/cls_cos": centred_cosine(cls, self.init_cls),
        }

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"pixels": self.pixels, "init_cls": self.init_cls, "init_patches": self.init_patches}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> FeatureDriftProbe:
        return cls(state["pixels"], state["init_cls"], state["init_patches"])
