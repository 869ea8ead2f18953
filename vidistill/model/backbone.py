"""The ViT backbone: any timm ViT (patch 14/16, register tokens, layer scale, RoPE/EVA)."""

from __future__ import annotations

import timm
import torch
from torch import nn

from vidistill.contract import EncoderContract


def build_backbone(
    arch: str, image_size: int, drop_path: float = 0.0, model_args: dict | None = None, pretrained: bool = False
) -> nn.Module:
    """A timm ViT without classifier whose ``forward_features`` returns (B, prefix+P, D).

    Random weights unless ``pretrained`` (then ``arch`` carries a pretrained tag and timm loads it
    from the Hugging Face cache, resampling position embeddings to ``image_size``; only
    ``vidistill.model.pretrained`` asks for that).

    ``dynamic_img_size`` lets the 96 px local crops run through the same weights as the 224 px
    global views (the position embedding is resampled on the fly). The export rebuilds the
    model with a fixed size, which keeps the ONNX graph free of that resampling.
    """
    try:
        return timm.create_model(
            arch,
            pretrained=pretrained,
            num_classes=0,
            img_size=image_size,
            drop_path_rate=drop_path,
            dynamic_img_size=True,
            **(model_args or {}),
        )
    except RuntimeError as e:  # timm raises RuntimeError for unknown names
        raise ValueError(f"unknown timm model {arch!r}: {e}") from None


def patch_size_of(backbone: nn.Module) -> int:
    ps = backbone.patch_embed.patch_size
    return int(ps[0] if isinstance(ps, (tuple, list)) else ps)


def split_tokens(backbone: nn.Module, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, prefix+P, D) -> ([CLS] (B, D), patch tokens (B, P, D)); register tokens are dropped."""
    return tokens[:, 0], tokens[:, backbone.num_prefix_tokens :]


def contract_for(
    backbone: nn.Module, arch: str, image_size: int, mean, std, model_args: dict | None = None
) -> EncoderContract:
    return EncoderContract(
        model_name=arch,
        image_size=image_size,
        patch_size=patch_size_of(backbone),
        embed_dim=int(backbone.embed_dim),
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        num_prefix_tokens=int(backbone.num_prefix_tokens),
        model_args=dict(model_args or {}),
    )
