"""The student-only next-frame predictor (training only; dropped at export)."""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block
from torch import nn


class NextFramePredictor(nn.Module):
    """Patch tokens of frame t → predicted patch tokens of frame t+Δ (before the head).

    Paper: "a 2-layer MLP as well as two attention blocks between the student backbone and
    projection head". The MLP separates the shared encoder from the prediction blocks; the
    attention blocks let a patch look at its neighbours to predict where content moves.
    A final LayerNorm puts the pre-norm residual stream back on the scale of the backbone's own
    normed output, so the shared head sees the same statistics on both paths.
    """

    def __init__(self, dim: int, num_heads: int, depth: int = 2, mlp_ratio: float = 4.0):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.blocks = nn.Sequential(
            *[Block(dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=True) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, patch_tokens: torch.Tensor) -> torch.Tensor:
        x = self.mlp(patch_tokens)
        return self.norm(self.blocks(x))
