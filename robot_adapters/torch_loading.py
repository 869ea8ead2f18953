"""Load the backbone as a torch module from an export folder (safetensors) or a checkpoint.

Shared by the torch encoder backend and :class:`VisionTower`. Needs torch and timm; the
checkpoint path goes through :func:`vidistill.checkpoint.load_teacher_backbone` (imported here,
lazily, so ONNX-only robots never import it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vidistill.contract import EncoderContract
from vidistill.errors import CheckpointError

from .artefacts import CONFIG_NAME, contract_from_folder, find_artefacts
from .errors import MissingBackendError

INSTALL_TORCH = "pip install torch timm safetensors"


def import_torch() -> Any:
    try:
        import torch
    except ImportError:
        raise MissingBackendError(f"the torch backend needs PyTorch, which is not installed: {INSTALL_TORCH}") from None
    return torch


def build_fixed_size_vit(contract: EncoderContract, model_args: dict | None = None) -> Any:
    """A timm ViT at the contract's fixed image size (no position-embedding resampling)."""
    try:
        import timm
    except ImportError:
        raise MissingBackendError(f"loading safetensors weights needs timm: {INSTALL_TORCH}") from None
    kwargs = {k: v for k, v in (model_args or {}).items() if k not in ("img_size", "num_classes", "dynamic_img_size")}
    return timm.create_model(
        contract.model_name,
        pretrained=False,
        num_classes=0,
        img_size=contract.image_size,
        dynamic_img_size=False,
        **kwargs,
    )


def load_safetensors_backbone(weights: Path) -> tuple[Any, EncoderContract]:
    """``encoder.safetensors`` + the ``config.json`` beside it -> (timm model in eval, contract)."""
    contract = contract_from_folder(weights.parent)
    if contract is None:
        raise CheckpointError(
            f"{weights}: no {CONFIG_NAME} with a 'vidistill' contract beside the weights; keep the "
            "safetensors file in its export folder"
        )
    config = json.loads((weights.parent / CONFIG_NAME).read_text()) if (weights.parent / CONFIG_NAME).is_file() else {}
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise MissingBackendError(f"loading {weights.name} needs safetensors: {INSTALL_TORCH}") from None
    model = build_fixed_size_vit(contract, config.get("model_args"))
    try:
        model.load_state_dict(load_file(str(weights)), strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{weights}: weights do not match {contract.model_name}: {e}") from None
    return model.eval(), contract


def load_backbone(path: str | Path) -> tuple[Any, EncoderContract, Path]:
    """(timm backbone in eval mode on CPU, its contract, the file used) for an export or run path."""
    import_torch()
    found = find_artefacts(path)
    if found.safetensors is not None:
        model, contract = load_safetensors_backbone(found.safetensors)
        return model, contract, found.safetensors
    if found.checkpoint is not None:
        from vidistill.checkpoint import load_teacher_backbone

        model, contract, ckpt = load_teacher_backbone(found.checkpoint)
        return model, contract, ckpt
    raise CheckpointError(
        f"{path}: no torch weights here (found {found.describe()}; need encoder.safetensors + config.json "
        "from `vidistill export`, or a run folder / checkpoint.pt)"
    )


def split_tokens(tokens: Any, num_prefix_tokens: int) -> tuple[Any, Any]:
    """(B, prefix + P, D) -> ([CLS] (B, D), patch tokens (B, P, D)); register tokens dropped."""
    return tokens[:, 0], tokens[:, num_prefix_tokens:]
