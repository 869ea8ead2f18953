"""The module that gets exported: the teacher backbone rebuilt at one fixed image size.

Training builds the backbone with ``dynamic_img_size`` (local crops share the weights), which
resamples the position embedding inside every forward: a frequent ONNX/TensorRT failure and
wasted work at run time. Export rebuilds the same timm architecture with ``img_size=S`` and
``dynamic_img_size=False``; for a new ``S`` the position embedding is resampled once here, with
the same timm function the dynamic model calls, so the rebuilt model computes what the teacher
computes at that size.
"""

from __future__ import annotations

import dataclasses

import timm
import torch
from timm.layers import resample_abs_pos_embed
from torch import nn

from vidistill.contract import EncoderContract
from vidistill.errors import VidistillError
from vidistill.model.backbone import split_tokens


class ExportEncoder(nn.Module):
    """``pixels`` (B, 3, S, S) normalised float32 → ``cls`` (B, D), ``patch_tokens`` (B, P, D)."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return split_tokens(self.backbone, self.backbone.forward_features(pixels))


def disable_fused_attention(module: nn.Module) -> nn.Module:
    """Plain matmul-softmax attention (timm's ``exportable`` path): the exporters turn the fused
    ``scaled_dot_product_attention`` into a longer graph with run-time scale computations."""
    for m in module.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = False
    return module


def _prefix_in_pos_embed(backbone: nn.Module) -> int:
    return 0 if getattr(backbone, "no_embed_class", False) else int(backbone.num_prefix_tokens)


def rebuild_fixed_size(
    teacher: nn.Module, contract: EncoderContract, image_size: int | None = None
) -> tuple[ExportEncoder, EncoderContract]:
    """The teacher's weights in a fixed-size timm model, wrapped for export, and its contract."""
    size = int(image_size or contract.image_size)
    if size <= 0 or size % contract.patch_size:
        raise VidistillError(
            f"--image-size {size} is not a positive multiple of the patch size {contract.patch_size}"
        )
    backbone = timm.create_model(
        contract.model_name, pretrained=False, num_classes=0, img_size=size, dynamic_img_size=False,
        **contract.model_args,
    )
    state = {k: v.detach().clone() for k, v in teacher.state_dict().items()}
    old_grid = tuple(teacher.patch_embed.grid_size)
    new_grid = tuple(backbone.patch_embed.grid_size)
    if "pos_embed" in state and old_grid != new_grid:
        state["pos_embed"] = resample_abs_pos_embed(
            state["pos_embed"],
            new_size=list(new_grid),
            old_size=list(old_grid),
            num_prefix_tokens=_prefix_in_pos_embed(backbone),
        )
    backbone.load_state_dict(state, strict=True)
    backbone.eval().requires_grad_(False)
    encoder = ExportEncoder(disable_fused_attention(backbone)).eval()
    return encoder, dataclasses.replace(contract, image_size=size)
