"""``encoder.safetensors`` + ``config.json``: a timm drop-in that needs no vidistill import.

``config.json`` uses timm's own Hugging Face layout (``architecture``, ``num_classes``,
``model_args`` -- the contract's model_args (register tokens, widths, ...) plus ``img_size`` --,
``pretrained_cfg``), so both of these load the weights with timm alone, exactly like the original
model name plus our weights::

    timm.create_model(name, pretrained=True, num_classes=0, **cfg["model_args"],
                      pretrained_cfg_overlay=dict(file="DIR/encoder.safetensors", custom_load=False))
    timm.create_model("local-dir:DIR", pretrained=True)   # reads config.json too

``custom_load=False`` matters before timm 1.0.31: the registry cfg of the ViTs says their
original weights are JAX ``.npz`` files, and older timm keeps that flag for a file override.

The encoder contract rides along under the ``"vidistill"`` key (the adapters read it there).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from vidistill.contract import EncoderContract
from vidistill.runtime.timm_vit import architecture_args

from .defaults import CONFIG_NAME, CONTRACT_KEY, SAFETENSORS_NAME

# The contract's resize rule in timm's words (crop_pct 1.0: the whole crop is the input).
TIMM_CROP_MODE = {"crop": "center", "stretch": "squash", "letterbox": "border"}


def timm_config(backbone: nn.Module, contract: EncoderContract) -> dict:
    """timm's hub config for the fixed-size backbone, plus the contract under ``"vidistill"``."""
    h, w = contract.image_size
    pretrained_cfg = {
        "architecture": contract.model_name,
        "tag": "vidistill",
        "custom_load": False,
        "input_size": [3, h, w],
        "fixed_input_size": True,
        "interpolation": contract.interpolation,
        "crop_pct": 1.0,
        "crop_mode": TIMM_CROP_MODE[contract.resize],
        "mean": list(contract.mean),
        "std": list(contract.std),
        "num_classes": 0,
        "pool_size": None,
        "first_conv": "patch_embed.proj",
        "classifier": "head",
    }
    return {
        "architecture": contract.model_name,
        "num_classes": 0,
        "num_features": int(backbone.num_features),
        "global_pool": str(getattr(backbone, "global_pool", "token")),
        "model_args": {**architecture_args(contract.model_args), "img_size": [h, w]},
        "pretrained_cfg": pretrained_cfg,
        CONTRACT_KEY: contract.to_dict(),
    }


def write_timm_artifacts(backbone: nn.Module, contract: EncoderContract, folder: Path) -> list[Path]:
    """Write ``encoder.safetensors`` (the backbone's state dict) and ``config.json``."""
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in backbone.state_dict().items()}
    weights = folder / SAFETENSORS_NAME
    save_file(state, str(weights), metadata={"format": "pt", CONTRACT_KEY: contract.to_json()})
    config = folder / CONFIG_NAME
    config.write_text(json.dumps(timm_config(backbone, contract), indent=2) + "\n")
    return [weights, config]


def load_timm_encoder(folder: str | Path) -> nn.Module:
    """The exported encoder through timm alone (what a user without vidistill would write); its
    ``pretrained_cfg`` carries our mean/std, so ``timm.data.resolve_data_config`` gets them."""
    import timm

    folder = Path(folder)
    cfg = json.loads((folder / CONFIG_NAME).read_text())
    overlay = dict(cfg["pretrained_cfg"], file=str(folder / SAFETENSORS_NAME), custom_load=False)
    return timm.create_model(
        cfg["architecture"], pretrained=True, pretrained_cfg_overlay=overlay, num_classes=0, **cfg.get("model_args", {})
    ).eval()
