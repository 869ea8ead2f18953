"""The ViT backbone: any timm ViT (patch 14/16, register tokens, layer scale, RoPE/EVA), built by
the one timm path the runtime serves from (:mod:`vidistill.runtime.timm_vit`)."""

from __future__ import annotations

from torch import nn

from vidistill.runtime.timm_vit import build_vit, contract_of, patch_size_of, split_tokens

__all__ = ["build_backbone", "contract_of", "patch_size_of", "split_tokens"]


def build_backbone(
    arch: str, image_size: int, drop_path: float = 0.0, model_args: dict | None = None, pretrained: bool = False
) -> nn.Module:
    """The training backbone: ``dynamic_img_size``, so the 96 px local crops run through the same
    weights as the 224 px global views (the position embedding is resampled on the fly). Random
    weights unless ``pretrained`` (``arch`` then carries a pretrained tag; only the ``--init``
    reader asks for that)."""
    return build_vit(arch, image_size, model_args, drop_path=drop_path, dynamic=True, pretrained=pretrained)
