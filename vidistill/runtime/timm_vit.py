"""The one timm path: every ViT vidistill trains, exports, evaluates or serves is built, split and
resampled here, so a fix lands once.

Build a timm ViT from (arch, model_args) at an (H, W) size; the arguments vidistill sets itself
(size, classifier, drop-path, ...) filtered out of saved ``model_args``; its patch size and prefix
tokens; the split of its tokens into [CLS] and patch tokens; an absolute position embedding
resampled from the grid it was saved at (any H x W, not only squares); the contract of a plain
timm hub config. Needs torch + timm; imports no training code (the runtime serves from it).
"""

from __future__ import annotations

import math
from typing import Any

from vidistill.contract import EncoderContract, as_hw
from vidistill.errors import VidistillError

from .errors import MissingBackendError

INSTALL_TORCH = "pip install torch timm safetensors"
# create_model kwargs that describe a build (set here from the call), not the architecture: never
# taken from saved model_args (a hub config records its img_size, an export its own).
BUILD_ARGS = ("img_size", "num_classes", "dynamic_img_size", "pretrained", "pretrained_cfg", "drop_path_rate",
              "drop_rate")

try:
    import torch
    from torch import nn
except ImportError:  # pragma: no cover - the ONNX/TensorRT-only robot never imports this module
    raise MissingBackendError(f"the torch backend needs PyTorch, which is not installed: {INSTALL_TORCH}") from None


class ArchitectureError(VidistillError):
    """timm cannot build this (arch, model_args): an unknown name, or an argument the family lacks."""


def architecture_args(model_args: dict | None) -> dict[str, Any]:
    """``model_args`` without the build arguments (:data:`BUILD_ARGS`)."""
    return {k: v for k, v in (model_args or {}).items() if k not in BUILD_ARGS}


def build_vit(
    arch: str, image_size: Any, model_args: dict | None = None, *, drop_path: float = 0.0, dynamic: bool = False,
    pretrained: bool = False,
) -> nn.Module:
    """A timm ViT without classifier at ``image_size`` (S or (H, W)); ``forward_features`` returns
    (B, prefix + P, D).

    ``dynamic``: timm's ``dynamic_img_size`` (training runs 96 px local crops through the weights
    of 224 px global views, resampling the position embedding on the fly); export and serving
    build fixed-size models, which keeps that resampling out of the graph. ``pretrained``: ``arch``
    carries a pretrained tag and timm loads it from the Hugging Face cache (network errors pass).
    """
    try:
        import timm
    except ImportError:
        raise MissingBackendError(f"building the encoder needs timm: {INSTALL_TORCH}") from None
    try:
        return timm.create_model(
            arch, pretrained=pretrained, num_classes=0, img_size=as_hw(image_size), drop_path_rate=drop_path,
            dynamic_img_size=dynamic, **architecture_args(model_args),
        )
    except (RuntimeError, TypeError) as e:  # unknown name; an argument the family does not take
        raise ArchitectureError(f"timm cannot build {arch!r} with {architecture_args(model_args)}: {e}") from None


def patch_size_of(backbone: nn.Module) -> int:
    ps = backbone.patch_embed.patch_size
    return int(ps[0] if isinstance(ps, (tuple, list)) else ps)


def split_tokens(backbone: nn.Module, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, prefix + P, D) -> ([CLS] (B, D), patch tokens (B, P, D)); register tokens are dropped."""
    return tokens[:, 0], tokens[:, int(backbone.num_prefix_tokens) :]


def prefix_in_pos_embed(backbone: nn.Module) -> int:
    """Prefix tokens with a position of their own in ``pos_embed`` (none in DINOv2-reg's layout)."""
    return 0 if getattr(backbone, "no_embed_class", False) else int(backbone.num_prefix_tokens)


def saved_grid(pos_embed: torch.Tensor, prefix: int, saved_size: Any = None, patch: int = 0) -> tuple[int, int]:
    """The (rows, cols) a position embedding was saved at: from the size it was saved at when
    known, else the square its token count makes."""
    if saved_size is not None:
        h, w = as_hw(saved_size)
        return h // patch, w // patch
    side = math.isqrt(max(int(pos_embed.shape[1]) - prefix, 0))
    return side, side


def resample_pos_embed(
    state: dict[str, torch.Tensor], backbone: nn.Module, old_grid: tuple[int, int], source: Any = "weights"
) -> dict[str, torch.Tensor]:
    """``state`` with its ``pos_embed`` (saved on ``old_grid``) resampled to ``backbone``'s grid,
    by the timm function its dynamic-size forward calls; unchanged where there is nothing to do
    (RoPE models, the same grid). A ``pos_embed`` that is not ``old_grid`` + the prefix tokens is
    an error naming both shapes: nothing is resized on a guess."""
    from timm.layers import resample_abs_pos_embed

    pos, target = state.get("pos_embed"), getattr(backbone, "pos_embed", None)
    if pos is None or target is None:
        return state
    prefix = prefix_in_pos_embed(backbone)
    new_grid = tuple(int(g) for g in backbone.patch_embed.grid_size)
    if pos.ndim != 3 or pos.shape[1] != old_grid[0] * old_grid[1] + prefix:
        raise VidistillError(
            f"{source}: position embedding pos_embed {tuple(pos.shape)} is not a {old_grid[0]}x{old_grid[1]} grid "
            f"+ {prefix} prefix tokens, the layout of the model's {tuple(target.shape)}"
        )
    if tuple(old_grid) == new_grid:
        return state
    resampled = resample_abs_pos_embed(pos.float(), new_size=list(new_grid), old_size=list(old_grid),
                                       num_prefix_tokens=prefix)
    return {**state, "pos_embed": resampled.to(pos.dtype)}


def contract_of(
    backbone: nn.Module, arch: str, image_size: Any, mean, std, model_args: dict | None = None, **extra: Any
) -> EncoderContract:
    """The input/output contract of a built ``backbone``."""
    return EncoderContract(
        model_name=arch,
        image_size=as_hw(image_size),
        patch_size=patch_size_of(backbone),
        embed_dim=int(backbone.embed_dim),
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        num_prefix_tokens=int(backbone.num_prefix_tokens),
        model_args=architecture_args(model_args),
        **extra,
    )


def contract_from_timm_config(config: dict) -> EncoderContract:
    """The contract of a plain timm hub folder's ``config.json`` (``architecture``, ``model_args``,
    ``pretrained_cfg``: what ``save_for_hf`` writes): the architecture is built once, on the meta
    device, to read its patch, width and prefix tokens; mean/std and input size from
    ``pretrained_cfg``, or the ``img_size`` it was built at."""
    from vidistill.contract import IMAGENET_MEAN, IMAGENET_STD

    pre = config.get("pretrained_cfg") or {}
    args = config.get("model_args") or {}
    size = as_hw(args.get("img_size") or tuple(pre.get("input_size", (3, 224, 224)))[1:])
    with torch.device("meta"):
        model = build_vit(config["architecture"], size, args)
    return contract_of(
        model, config["architecture"], size, pre.get("mean", IMAGENET_MEAN), pre.get("std", IMAGENET_STD), args,
        interpolation="bilinear" if pre.get("interpolation") == "bilinear" else "bicubic",
    )
