"""``VisionTower``: the encoder as an ``nn.Module`` for VLA-style policies that consume patch tokens.

Interface of prismatic/OpenVLA's ``VisionBackbone``: ``forward(pixel_values) -> (B, N, D)``,
``get_image_transform()``, ``default_image_resolution``, ``embed_dim``, ``num_patches``,
``half_precision_dtype``. Frozen by default; an optional projector (always trainable) maps the
tokens to the language model's width. Swapping the vision encoder under a trained VLA needs the
projector retrained: that is what ``trainable=False`` + ``proj_dim`` is for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from vidistill.contract import EncoderContract
from vidistill.runtime.preprocess import as_image_batch, preprocess_numpy
from vidistill.runtime.torch_model import TokenEncoder, load_token_encoder

PROJECTORS = ("linear", "mlp")


class ImageTransform:
    """PIL image or uint8 HWC numpy (or a list/batch of them) -> normalised float tensor per the contract.

    One image gives (3, H, W); a batch or list gives (N, 3, H, W). Same resize rule and
    normalisation as the encoder backends (all from the contract).
    """

    def __init__(self, contract: EncoderContract) -> None:
        self.contract = contract

    def __call__(self, image: Any) -> torch.Tensor:
        single = not isinstance(image, (list, tuple)) and (
            not hasattr(image, "shape") or len(image.shape) == 3
        )
        pixels = torch.from_numpy(preprocess_numpy(as_image_batch(image), self.contract))
        return pixels[0] if single else pixels

    def __repr__(self) -> str:
        c = self.contract
        return f"ImageTransform(size={c.image_size}, resize={c.resize!r}, mean={c.mean}, std={c.std})"


def make_projector(embed_dim: int, proj_dim: int, kind: str) -> nn.Module:
    """"linear": one Linear; "mlp": Linear -> GELU -> Linear (prismatic's gelu-mlp projector)."""
    if kind == "linear":
        return nn.Linear(embed_dim, proj_dim)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(embed_dim, proj_dim), nn.GELU(), nn.Linear(proj_dim, proj_dim))
    raise ValueError(f"projector must be one of {PROJECTORS}, got {kind!r}")


class VisionTower(nn.Module):
    """Patch tokens for a policy: ``forward((B, 3, H, W) normalised) -> (B, P, D')``.

    Args:
        backbone: a timm ViT whose ``forward_features`` returns (B, prefix + P, D), or the
            runtime's :class:`TokenEncoder` around one.
        contract: its input contract (image size, mean/std): use :meth:`from_pretrained`.
        include_cls: prepend the [CLS] token: (B, 1 + P, D').
        trainable: fine-tune the backbone (default frozen: eval mode, no grad, run under no_grad).
        proj_dim: if set, project tokens to this width (e.g. the LLM's hidden size).
        projector: "linear" or "mlp". The projector is always trainable.
    """

    def __init__(
        self,
        backbone: nn.Module,
        contract: EncoderContract,
        include_cls: bool = False,
        trainable: bool = False,
        proj_dim: int | None = None,
        projector: str = "mlp",
    ) -> None:
        super().__init__()
        self.encoder = backbone if isinstance(backbone, TokenEncoder) else TokenEncoder(backbone)
        self.contract = contract
        self.include_cls = include_cls
        self.trainable = trainable
        self.projector = make_projector(contract.embed_dim, proj_dim, projector) if proj_dim else None
        self.encoder.requires_grad_(trainable)
        if not trainable:
            self.encoder.eval()

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs: Any) -> VisionTower:
        """From an export folder (encoder.safetensors + config.json), a run folder or a checkpoint."""
        encoder, contract, _ = load_token_encoder(path)
        return cls(encoder, contract, **kwargs)

    # -- prismatic-style properties --------------------------------------------------------------
    @property
    def embed_dim(self) -> int:
        """The backbone's token width D (before any projector)."""
        return self.contract.embed_dim

    @property
    def out_dim(self) -> int:
        """The width of :meth:`forward`'s tokens: ``proj_dim`` with a projector, else ``embed_dim``."""
        return self.projector_dim or self.embed_dim

    @property
    def projector_dim(self) -> int | None:
        if self.projector is None:
            return None
        last = self.projector if isinstance(self.projector, nn.Linear) else self.projector[-1]
        return int(last.out_features)

    @property
    def num_patches(self) -> int:
        return self.contract.num_patches

    @property
    def num_tokens(self) -> int:
        """Tokens per image that :meth:`forward` returns (``num_patches`` + 1 with ``include_cls``)."""
        return self.num_patches + int(self.include_cls)

    @property
    def backbone(self) -> nn.Module:
        """The timm ViT itself."""
        return self.encoder.backbone

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of :meth:`forward`'s input."""
        return self.contract.image_size

    @property
    def patch_size(self) -> int:
        return self.contract.patch_size

    @property
    def grid_size(self) -> tuple[int, int]:
        return self.contract.grid_size

    @property
    def default_image_resolution(self) -> tuple[int, int, int]:
        """(C, H, W), prismatic's convention."""
        return (3, *self.image_size)

    @property
    def half_precision_dtype(self) -> torch.dtype:
        """bf16: ViT LayerNorms overflow less than in fp16."""
        return torch.bfloat16

    def get_image_transform(self) -> ImageTransform:
        """Callable: PIL / uint8 HWC numpy -> normalised (3, H, W) float tensor (per the contract)."""
        return ImageTransform(self.contract)

    # -- modes and forward ----------------------------------------------------------------------
    def train(self, mode: bool = True) -> VisionTower:
        """A frozen backbone stays in eval mode when the policy around it trains."""
        super().train(mode)
        if not self.trainable:
            self.encoder.eval()
        return self

    def _tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        cls, patches = self.encoder(pixel_values)
        return torch.cat([cls[:, None], patches], dim=1) if self.include_cls else patches

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised pixels (from :meth:`get_image_transform`) -> (B, N, out_dim)."""
        h, w = self.image_size
        if pixel_values.dim() != 4 or tuple(pixel_values.shape[1:]) != (3, h, w):
            raise ValueError(
                f"VisionTower expects normalised pixel_values of shape (B, 3, {h}, {w}) (use "
                f"get_image_transform()), got {tuple(pixel_values.shape)}"
            )
        if self.trainable:
            tokens = self._tokens(pixel_values)
        else:
            with torch.no_grad():
                tokens = self._tokens(pixel_values)
        return self.projector(tokens) if self.projector is not None else tokens

    def extra_repr(self) -> str:
        c = self.contract
        return (f"model={c.model_name}, image_size={c.image_size}, patches={c.num_patches}, embed_dim={c.embed_dim}, "
                f"include_cls={self.include_cls}, trainable={self.trainable}")

