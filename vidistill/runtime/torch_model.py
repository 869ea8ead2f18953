"""The encoder as a torch module: rebuilt from a contract, at any input size, from any artefact.

Needs torch + timm (+ safetensors for export folders); never training code. The timm model is
built, resampled and split by :mod:`.timm_vit` (the one timm path, training's too) from
``contract.model_name`` + ``contract.model_args`` (any ViT family: patch 14/16, register tokens,
layer scale, EVA/RoPE); the position embedding is resampled once when the size changes. Export traces what :func:`rebuild_at_size` returns; the torch backend, eval and the VLA vision
tower run the same module.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from vidistill.contract import EncoderContract, as_hw
from vidistill.errors import CheckpointError, VidistillError

from .errors import MissingBackendError

# torch through timm_vit: a robot without it gets that module's MissingBackendError, not an ImportError.
from .timm_vit import (
    INSTALL_TORCH,
    ArchitectureError,
    build_vit,
    contract_from_timm_config,
    nn,
    resample_pos_embed,
    split_tokens,
    torch,
)

log = logging.getLogger(__name__)


def resolve_device(device: str | None = None) -> str:
    """None/"auto" -> "cuda" when available else "cpu"; a CUDA device on a machine without one is a clear error."""
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise VidistillError(f"device {device!r}: CUDA is not available on this machine")
    try:
        return str(torch.device(device))
    except RuntimeError as e:
        raise VidistillError(f"device {device!r}: {e}") from None


class TokenEncoder(nn.Module):
    """``pixels`` (B, 3, H, W) normalised float32 -> ``cls`` (B, D), ``patch_tokens`` (B, P, D)."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return split_tokens(self.backbone, self.backbone.forward_features(pixels))


def build_timm_encoder(contract: EncoderContract, image_size: Any = None, dynamic: bool = False) -> nn.Module:
    """The contract's timm architecture, random weights, no classifier, at ``image_size`` (H, W)."""
    try:
        return build_vit(contract.model_name, image_size or contract.image_size, contract.model_args, dynamic=dynamic)
    except ArchitectureError as e:
        raise CheckpointError(str(e)) from None


def disable_fused_attention(module: nn.Module) -> nn.Module:
    """Plain matmul-softmax attention (timm's ``exportable`` path): the exporters turn the fused
    ``scaled_dot_product_attention`` into a longer graph with run-time scale computations."""
    for m in module.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = False
    return module


def rebuild_at_size(
    state: dict[str, torch.Tensor], contract: EncoderContract, image_size: Any = None, source: Any = "weights"
) -> tuple[TokenEncoder, EncoderContract]:
    """Weights made for ``contract.image_size`` in a fixed-size model at ``image_size`` (H, W).

    The absolute position embedding is resampled once, with the timm function the dynamic-size
    training model calls, so the rebuilt model computes what the training model computes at
    that size. Returns the module (eval, frozen) and the contract at the new size.
    """
    size = as_hw(image_size or contract.image_size)
    p = contract.patch_size
    if min(size) <= 0 or size[0] % p or size[1] % p:
        raise VidistillError(f"image size {size[0]}x{size[1]} is not a positive multiple of the patch size {p}")
    backbone = build_timm_encoder(contract, size)
    state = resample_pos_embed(dict(state), backbone, contract.grid_size, source)
    try:
        backbone.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{source}: weights do not match {contract.model_name} {contract.model_args}: "
                              f"{str(e).splitlines()[0]} ...") from None
    backbone.eval().requires_grad_(False)
    return TokenEncoder(backbone).eval(), dataclasses.replace(contract, image_size=size)


def safetensors_state(weights: Path) -> tuple[dict[str, torch.Tensor], EncoderContract]:
    """``encoder.safetensors`` / ``model.safetensors`` + the ``config.json`` beside it (a vidistill
    export, or a plain timm hub folder)."""
    from .artefacts import contract_from_folder, read_json
    from .names import CONFIG_NAME

    contract = contract_from_folder(weights.parent)
    config_path = weights.parent / CONFIG_NAME
    if contract is None and config_path.is_file() and "architecture" in (config := read_json(config_path)):
        contract = contract_from_timm_config(config)
    if contract is None:
        raise CheckpointError(
            f"{weights}: no {CONFIG_NAME} (vidistill contract or timm hub config) beside the weights; keep "
            "the safetensors file in its export folder"
        )
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise MissingBackendError(f"loading {weights.name} needs safetensors: {INSTALL_TORCH}") from None
    try:
        return load_file(str(weights)), contract
    except Exception as e:  # truncated / not a safetensors file
        raise CheckpointError(f"{weights}: cannot be read as safetensors: {e}") from None


def load_weights(path: str | Path, branch: str = "teacher") -> tuple[dict[str, torch.Tensor], EncoderContract, Path]:
    """(backbone state dict, contract, file used) from an export folder, run folder, checkpoint
    or safetensors file. ``branch="student"``: a checkpoint's student (a diagnostic)."""
    from .artefacts import find_artefacts
    from .checkpoints import backbone_state

    found = find_artefacts(path)
    if branch == "student":
        if found.checkpoint is None:
            raise VidistillError(f"{path}: an export holds only the teacher; give the run's checkpoint for the student")
        return backbone_state(found.checkpoint, branch)
    if found.safetensors is not None:  # what the robot is served, when there is one
        state, contract = safetensors_state(found.safetensors)
        return state, contract, found.safetensors
    if found.checkpoint is not None:
        return backbone_state(found.checkpoint, branch)
    raise CheckpointError(
        f"{path}: no torch weights here (found {found.describe()}; need encoder.safetensors + config.json "
        "from `vidistill export`, or a run folder / checkpoint.pt)"
    )


def load_token_encoder(
    path: str | Path, image_size: Any = None, branch: str = "teacher"
) -> tuple[TokenEncoder, EncoderContract, Path]:
    """The encoder module (fixed size, eval, frozen, CPU), its contract at that size, the file used."""
    state, contract, used = load_weights(path, branch)
    module, contract = rebuild_at_size(state, contract, image_size, source=used)
    return module, contract, used


def load_teacher_backbone(
    path: str | Path | None, branch: str = "teacher"
) -> tuple[nn.Module, EncoderContract, Path]:
    """The teacher's backbone (what gets exported and evaluated), in eval mode, on CPU.

    ``path``: checkpoint file, run folder, or None for the latest run. Returns the timm model
    (dynamic input size, as training built it), its input contract and the checkpoint used.
    ``branch="student"`` loads the student's backbone instead: a diagnostic, e.g. when a slow
    EMA teacher hides what the student has learned. Reads through the runtime (torch + timm +
    contract only), the same code that serves a run folder to a robot.
    """
    from .checkpoints import backbone_state

    weights, contract, ckpt = backbone_state(path, branch)
    backbone = build_timm_encoder(contract, dynamic=True)
    try:
        backbone.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{ckpt}: {branch} weights do not match {contract.model_name}: {e}") from None
    return backbone.eval(), contract, ckpt
