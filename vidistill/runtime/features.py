"""What an encoder returns: the [CLS] vector and the patch tokens, plus their common views.

Pure numpy at import time; torch tensors work too (the same methods, no torch import here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

OUTPUTS = ("grid", "tokens", "cls", "pooled")


def _is_numpy(x: Any) -> bool:
    return isinstance(x, np.ndarray)


def tokens_to_grid(patch_tokens: Any, grid_size: tuple[int, int] | int) -> Any:
    """(N, P, D) or (P, D) row-major patch tokens -> (N, D, h, w) or (D, h, w) feature map.

    Works on numpy arrays and torch tensors alike and returns the same kind. The result is a
    contiguous copy (a channels-first map is what conv heads and SB3 expect).
    """
    h, w = (grid_size, grid_size) if isinstance(grid_size, int) else (int(grid_size[0]), int(grid_size[1]))
    shape = tuple(patch_tokens.shape)
    if len(shape) not in (2, 3) or shape[-2] != h * w:
        raise ValueError(
            f"tokens_to_grid: expected patch tokens of shape (N, {h * w}, D) or ({h * w}, D) for a "
            f"{h}x{w} grid, got {shape}"
        )
    d = shape[-1]
    lead = shape[:-2]
    grid = patch_tokens.reshape(*lead, h, w, d)
    if _is_numpy(grid):
        axes = (0, 3, 1, 2) if lead else (2, 0, 1)
        return np.ascontiguousarray(grid.transpose(axes))
    return grid.permute(*((0, 3, 1, 2) if lead else (2, 0, 1))).contiguous()


def grid_to_tokens(grid: Any) -> Any:
    """The inverse of :func:`tokens_to_grid`: (N, D, h, w) -> (N, h*w, D)."""
    if len(grid.shape) != 4:
        raise ValueError(f"grid_to_tokens: expected (N, D, h, w), got {tuple(grid.shape)}")
    n, d, h, w = grid.shape
    if _is_numpy(grid):
        return np.ascontiguousarray(grid.reshape(n, d, h * w).transpose(0, 2, 1))
    return grid.reshape(n, d, h * w).transpose(1, 2).contiguous()


@dataclass(frozen=True)
class Features:
    """A batch of encoder outputs.

    ``cls``: (N, D); ``patch_tokens``: (N, P, D) with ``P = h * w`` in row-major order;
    ``grid_size``: (h, w). Arrays are numpy float32 unless ``encode(..., as_tensor=True)`` was
    asked for, in which case they are torch tensors (on the encoder's device for the torch
    backend).
    """

    cls: Any
    patch_tokens: Any
    grid_size: tuple[int, int]

    def __len__(self) -> int:
        return int(self.cls.shape[0])

    @property
    def embed_dim(self) -> int:
        return int(self.cls.shape[-1])

    def grid(self) -> Any:
        """(N, D, h, w) channels-first feature map."""
        return tokens_to_grid(self.patch_tokens, self.grid_size)

    def pooled(self) -> Any:
        """(N, D) mean of the patch tokens (often a better global descriptor than [CLS])."""
        return self.patch_tokens.mean(axis=1) if _is_numpy(self.patch_tokens) else self.patch_tokens.mean(dim=1)

    def select(self, output: str) -> Any:
        """One of ``"grid"`` (N, D, h, w), ``"tokens"`` (N, P, D), ``"cls"`` (N, D), ``"pooled"`` (N, D)."""
        if output == "grid":
            return self.grid()
        if output == "tokens":
            return self.patch_tokens
        if output == "cls":
            return self.cls
        if output == "pooled":
            return self.pooled()
        raise ValueError(f"unknown output {output!r}: expected one of {OUTPUTS}")

    def __getitem__(self, index: Any) -> Features:
        """Index or slice the batch: ``features[0:2]``; an int keeps a batch of one."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return Features(self.cls[index], self.patch_tokens[index], self.grid_size)


def output_shape(output: str, embed_dim: int, grid_size: tuple[int, int]) -> tuple[int, ...]:
    """The per-image shape of :meth:`Features.select` (without the batch dimension)."""
    h, w = grid_size
    shapes = {
        "grid": (embed_dim, h, w),
        "tokens": (h * w, embed_dim),
        "cls": (embed_dim,),
        "pooled": (embed_dim,),
    }
    if output not in shapes:
        raise ValueError(f"unknown output {output!r}: expected one of {OUTPUTS}")
    return shapes[output]
