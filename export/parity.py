"""Served artefact vs the PyTorch teacher: the same random inputs through both, differences measured.

The artefact side is the runtime's :class:`~vidistill.runtime.encoder.Encoder` (``run``: the
network of the backend a robot loads), so the numbers in ``manifest.json`` certify what the
robot runs. The reference is the teacher as the checkpoint holds it (dynamic-size timm model,
fused attention), not the rebuilt export module, so the numbers cover the whole chain:
rebuild, position-embedding resampling, tracing, simplification and the runtime.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vidistill.contract import EncoderContract
from vidistill.runtime.encoder import Encoder

from .defaults import ORT_ATOL, PARITY_BATCHES, TRT_MIN_COSINE
from .errors import ParityError

Outputs = tuple[np.ndarray, np.ndarray]


def random_pixels(batch: int, contract: EncoderContract, seed: int = 0) -> torch.Tensor:
    """Normalised-looking inputs: N(0, 1), float32, (B, 3, H, W)."""
    g = torch.Generator().manual_seed(seed + batch)
    return torch.randn(batch, 3, *contract.image_size, generator=g)


@torch.inference_mode()
def torch_outputs(model: torch.nn.Module, pixels: torch.Tensor) -> Outputs:
    device = next(model.parameters()).device
    cls, tokens = model(pixels.to(device))
    return cls.float().cpu().numpy(), tokens.float().cpu().numpy()


def max_abs_diff(a: Outputs, b: Outputs) -> float:
    return float(max(np.abs(x.astype(np.float64) - y).max() for x, y in zip(a, b, strict=True)))


def token_cosine(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> tuple[float, float]:
    """Mean and minimum cosine similarity between matching tokens (last dim = features)."""
    a, b = torch.as_tensor(a).float(), torch.as_tensor(b).float()
    cos = F.cosine_similarity(a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1]), dim=-1)
    return float(cos.mean()), float(cos.min())


def check_parity(
    reference: torch.nn.Module,
    served: Encoder,
    name: str,
    batches: Sequence[int] = PARITY_BATCHES,
    atol: float = ORT_ATOL,
) -> dict[str, float]:
    """Max |served - torch| over both outputs per batch size; ParityError past ``atol``."""
    diffs: dict[str, float] = {}
    for batch in batches:
        pixels = random_pixels(batch, served.contract)
        expected = torch_outputs(reference, pixels)
        got = served.run(pixels.numpy())
        shapes = [x.shape for x in got], [x.shape for x in expected]
        if shapes[0] != shapes[1]:
            raise ParityError(f"{name} ({served.backend}) output shapes {shapes[0]} differ from PyTorch {shapes[1]} at batch {batch}")
        diffs[str(batch)] = max_abs_diff(got, expected)
    worst = max(diffs, key=diffs.get)
    if not diffs[worst] <= atol:  # also catches NaN
        raise ParityError(
            f"{name} ({served.backend} backend) does not match the PyTorch teacher: max |diff| {diffs[worst]:.3g} "
            f"at batch {worst} (tolerance {atol:g}; per batch: {_fmt(diffs)})"
        )
    return diffs


def check_cosine(
    reference: torch.nn.Module,
    served: Encoder,
    name: str,
    batches: Sequence[int],
    min_cosine: float = TRT_MIN_COSINE,
) -> dict[str, float]:
    """Per-token cosine of a reduced-precision backend (TensorRT fp16/bf16) vs the fp32 teacher."""
    worst = {"cosine_patch_tokens": 1.0, "cosine_patch_tokens_min": 1.0, "cosine_cls": 1.0}
    for batch in batches:
        pixels = random_pixels(batch, served.contract)
        ref_cls, ref_tokens = torch_outputs(reference, pixels)
        cls, tokens = served.run(pixels.numpy())
        mean_t, min_t = token_cosine(tokens, ref_tokens)
        mean_c, _ = token_cosine(cls, ref_cls)
        worst["cosine_patch_tokens"] = min(worst["cosine_patch_tokens"], mean_t)
        worst["cosine_patch_tokens_min"] = min(worst["cosine_patch_tokens_min"], min_t)
        worst["cosine_cls"] = min(worst["cosine_cls"], mean_c)
    if not worst["cosine_patch_tokens"] >= min_cosine:
        raise ParityError(
            f"{name} does not match the PyTorch teacher: patch-token cosine "
            f"{worst['cosine_patch_tokens']:.5f} < {min_cosine} (cls {worst['cosine_cls']:.5f})"
        )
    return worst


def _fmt(values: dict[str, float]) -> str:
    return ", ".join(f"{k}: {v:.3g}" for k, v in values.items())
