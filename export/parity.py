"""Artefact vs PyTorch: the same random inputs through both, the differences measured.

The reference is the teacher exactly as the checkpoint holds it (dynamic-size timm model,
fused attention), not the rebuilt export module, so the numbers cover the whole chain:
rebuild, position-embedding resampling, tracing, simplification and the runtime.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vidistill.contract import EncoderContract

from .defaults import ORT_ATOL, PARITY_BATCHES
from .errors import ParityError

Outputs = tuple[np.ndarray, np.ndarray]


def random_pixels(batch: int, contract: EncoderContract, seed: int = 0) -> torch.Tensor:
    """Normalised-looking inputs: N(0, 1), float32, (B, 3, S, S)."""
    g = torch.Generator().manual_seed(seed + batch)
    s = contract.image_size
    return torch.randn(batch, 3, s, s, generator=g)


@torch.inference_mode()
def torch_outputs(model: torch.nn.Module, pixels: torch.Tensor) -> Outputs:
    cls, tokens = model(pixels)
    return cls.float().cpu().numpy(), tokens.float().cpu().numpy()


def max_abs_diff(a: Outputs, b: Outputs) -> float:
    return float(max(np.abs(x.astype(np.float64) - y).max() for x, y in zip(a, b, strict=True)))


def token_cosine(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> tuple[float, float]:
    """Mean and minimum cosine similarity between matching tokens (last dim = features)."""
    a, b = torch.as_tensor(a).float(), torch.as_tensor(b).float()
    cos = F.cosine_similarity(a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1]), dim=-1)
    return float(cos.mean()), float(cos.min())


def check_ort_parity(
    reference: torch.nn.Module,
    run_onnx: Callable[[np.ndarray], Outputs],
    contract: EncoderContract,
    batches: Sequence[int] = PARITY_BATCHES,
    atol: float = ORT_ATOL,
) -> dict[str, float]:
    """Max |ORT - torch| over both outputs per batch size; ParityError past ``atol``."""
    diffs: dict[str, float] = {}
    for batch in batches:
        pixels = random_pixels(batch, contract)
        expected = torch_outputs(reference, pixels)
        got = run_onnx(pixels.numpy())
        shapes = [x.shape for x in got], [x.shape for x in expected]
        if shapes[0] != shapes[1]:
            raise ParityError(f"ONNX Runtime output shapes {shapes[0]} differ from PyTorch {shapes[1]} at batch {batch}")
        diffs[str(batch)] = max_abs_diff(got, expected)
    worst = max(diffs, key=diffs.get)
    if not diffs[worst] <= atol:  # also catches NaN
        raise ParityError(
            f"encoder.onnx does not match the PyTorch teacher: max |diff| {diffs[worst]:.3g} at batch "
            f"{worst} (tolerance {atol:g}; per batch: {_fmt(diffs)})"
        )
    return diffs


def _fmt(values: dict[str, float]) -> str:
    return ", ".join(f"{k}: {v:.3g}" for k, v in values.items())
