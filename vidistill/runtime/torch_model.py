"""The encoder as a torch module: rebuilt from a contract, at any input size, from any artefact.

Needs torch + timm (+ safetensors for export folders); never training code. One place builds
the timm model from ``contract.model_name`` + ``contract.model_args`` (any ViT family: patch
14/16, register tokens, layer scale, EVA/RoPE), resamples an absolute position embedding once
when the size changes (RoPE models compute theirs from the grid), and splits the tokens.
Export traces what :func:`rebuild_at_size` returns; the torch backend, eval and the VLA vision
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

log = logging.getLogger(__name__)

INSTALL_TORCH = "pip install torch timm safetensors"
_OWN_ARGS = ("img_size", "num_classes", "dynamic_img_size", "pretrained", "drop_path_rate")

try:
    import torch
    from torch import nn
except ImportError:  # pragma: no cover - the ONNX/TensorRT-only robot never imports this module
    raise MissingBackendError(f"the torch backend needs PyTorch, which is not installed: {INSTALL_TORCH}") from None


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


def split_tokens(tokens: torch.Tensor, num_prefix_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, prefix + P, D) -> ([CLS] (B, D), patch tokens (B, P, D)); register tokens dropped."""
    return tokens[:, 0], tokens[:, num_prefix_tokens:]


class TokenEncoder(nn.Module):
    """``pixels`` (B, 3, H, W) normalised float32 -> ``cls`` (B, D), ``patch_tokens`` (B, P, D)."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return split_tokens(self.backbone.forward_features(pixels), int(self.backbone.num_prefix_tokens))


def timm_kwargs(contract: EncoderContract) -> dict[str, Any]:
    """``contract.model_args`` without the arguments the runtime sets itself."""
    return {k: v for k, v in contract.model_args.items() if k not in _OWN_ARGS}


def build_timm_encoder(contract: EncoderContract, image_size: Any = None, dynamic: bool = False) -> nn.Module:
    """The contract's timm architecture, random weights, no classifier, at ``image_size`` (H, W)."""
    try:
        import timm
    except ImportError:
        raise MissingBackendError(f"rebuilding the encoder needs timm: {INSTALL_TORCH}") from None
    size = as_hw(image_size or contract.image_size)
    try:
        return timm.create_model(
            contract.model_name, pretrained=False, num_classes=0, img_size=size, dynamic_img_size=dynamic,
            **timm_kwargs(contract),
        )
    except (RuntimeError, TypeError) as e:  # unknown name, argument the family does not take
        raise CheckpointError(f"timm cannot build {contract.model_name!r} with {contract.model_args}: {e}") from None


def _prefix_in_pos_embed(backbone: nn.Module) -> int:
    return 0 if getattr(backbone, "no_embed_class", False) else int(backbone.num_prefix_tokens)


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
    from timm.layers import resample_abs_pos_embed

    size = as_hw(image_size or contract.image_size)
    p = contract.patch_size
    if min(size) <= 0 or size[0] % p or size[1] % p:
        raise VidistillError(f"image size {size[0]}x{size[1]} is not a positive multiple of the patch size {p}")
    backbone = build_timm_encoder(contract, size)
    state = dict(state)
    new_grid = tuple(backbone.patch_embed.grid_size)
    if "pos_embed" in state and tuple(contract.grid_size) != new_grid:
        state["pos_embed"] = resample_abs_pos_embed(
            state["pos_embed"].float(), new_size=list(new_grid), old_size=list(contract.grid_size),
            num_prefix_tokens=_prefix_in_pos_embed(backbone),
        )
    try:
        backbone.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{source}: weights do not match {contract.model_name} {contract.model_args}: "
                              f"{str(e).splitlines()[0]} ...") from None
    backbone.eval().requires_grad_(False)
    return TokenEncoder(backbone).eval(), dataclasses.replace(contract, image_size=size)


def contract_from_timm_config(config: dict) -> EncoderContract:
    """The contract of a plain timm hub folder (``architecture``, ``model_args``, ``pretrained_cfg``:
    what ``save_for_hf`` writes): the architecture is built once to read its patch, width and
    prefix tokens; mean/std and input size from ``pretrained_cfg``."""
    pre = config.get("pretrained_cfg") or {}
    args = {k: v for k, v in (config.get("model_args") or {}).items() if k not in _OWN_ARGS}
    size = as_hw(tuple(pre.get("input_size", (3, 224, 224)))[1:])
    probe = EncoderContract(config["architecture"], size, 16, 1, model_args=args)
    model = build_timm_encoder(probe)
    ps = model.patch_embed.patch_size
    return EncoderContract(
        model_name=config["architecture"], image_size=size, patch_size=int(ps[0] if isinstance(ps, (tuple, list)) else ps),
        embed_dim=int(model.embed_dim), mean=tuple(pre.get("mean", probe.mean)), std=tuple(pre.get("std", probe.std)),
        num_prefix_tokens=int(model.num_prefix_tokens), model_args=args,
        interpolation="bilinear" if pre.get("interpolation") == "bilinear" else "bicubic",
    )


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
