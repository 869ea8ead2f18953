"""Starting weights for the backbone: ``--init SPEC``, resolved to an architecture and a state dict.

SPEC is one of

* a timm name with a pretrained tag (``vit_small_patch14_reg4_dinov2.lvd142m``): loaded by timm's
  own pretrained machinery from the Hugging Face hub cache (offline when cached);
* a folder in timm's hub layout: ``config.json`` (``architecture``, optional ``model_args``) +
  ``model.safetensors`` (what ``timm.models._hub.save_for_hf`` writes) or a ``vidistill export``
  folder (``encoder.safetensors``);
* a single ``.safetensors`` file, with ``--arch`` (or the contract a vidistill export embeds);
* a vidistill run folder or checkpoint (its teacher backbone).

What a path is, its contract and its weights are read by the runtime (the artefact resolver, the
checkpoint reader, :mod:`vidistill.runtime.timm_vit`): the same code that serves it. The
architecture (timm name + ``model_args``) comes from the init and is settled into the run's
config by :func:`vidistill.config.settle_model` (``build_config`` calls it), so checkpoints, resume and export rebuild the same model. The weights go into the
backbone built for training after timm's own ``checkpoint_filter_fn`` for that family (which
converts foreign layouts: original DINOv2, CLIP, ...); the position embedding is resampled from
the grid it was saved at, and patch kernels of another size are refused, never resized.
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from vidistill.contract import EncoderContract
from vidistill.errors import CheckpointError, VidistillError
from vidistill.model.backbone import build_backbone
from vidistill.runtime.artefacts import contract_from_folder, find_artefacts, read_json
from vidistill.runtime.checkpoints import backbone_state
from vidistill.runtime.names import CONFIG_NAME
from vidistill.runtime.timm_vit import (
    ArchitectureError,
    architecture_args,
    build_vit,
    contract_from_timm_config,
    patch_size_of,
    prefix_in_pos_embed,
    resample_pos_embed,
    saved_grid,
)

log = logging.getLogger(__name__)

# save_for_hf's default, when not asked for safetensors.
TORCH_BIN = "pytorch_model.bin"
SHOWN_MISMATCHES = 6
NOT_A_VIT = "vidistill trains timm VisionTransformer / Eva families: DINO, DINOv2, DINOv3, DeiT, CLIP ViTs"


class InitError(VidistillError):
    """An ``--init`` that cannot be used: missing, not an encoder, not matching, unreachable."""


@dataclass(frozen=True)
class PretrainedInit:
    """Where the starting weights are and the architecture they belong to."""

    spec: str  # what the user gave
    kind: str  # "timm" or what the artefact resolver says the path is: "run", "export", "hub folder", ...
    arch: str  # timm name without pretrained tag
    model_args: dict = field(default_factory=dict)
    patch_size: int = 16
    location: Path | None = None  # weights file / checkpoint; None for a timm name
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    # (H, W) the weights were saved at, when the file says: a non-square grid's position embedding
    # cannot be resampled from its token count alone.
    saved_size: tuple[int, int] | None = None

    def describe(self) -> str:
        where = self.spec if self.location is None else str(self.location)
        return f"{self.kind} init {where} ({self.arch}, patch {self.patch_size})"


# ------------------------------------------------------------------------------ resolution
def resolve_init(spec: str, arch: str = "", model_args: dict | None = None) -> PretrainedInit:
    """Find what ``spec`` names and its architecture, without loading weights.

    ``arch``/``model_args`` are only used where the init does not say (a bare ``.safetensors``).
    """
    path = Path(spec).expanduser()
    if not path.exists():
        if _looks_like_path(spec):
            raise InitError(f"--init {spec}: no such file or folder")
        return _from_timm_name(spec, model_args or {})
    try:
        found = find_artefacts(path)
        kind = found.kind
    except CheckpointError as e:
        raise InitError(f"--init {spec}: {e}") from None
    if kind in ("run", "checkpoint"):
        _, contract, ckpt = _read(spec, backbone_state, found.checkpoint)
        return _from_contract(spec, kind, contract, ckpt)
    if kind == "export" and found.safetensors is not None and (contract := _read(spec, contract_from_folder, path)):
        return _from_contract(spec, kind, contract, found.safetensors)
    if kind == "hub folder":
        return _from_hub_folder(spec, path, found.safetensors or (path / TORCH_BIN))
    if kind == "safetensors":
        return _from_safetensors(spec, path, arch, model_args or {})
    what = "folder without config.json or checkpoint.pt" if path.is_dir() else "not an encoder's weights"
    raise InitError(
        f"--init {spec}: {what} (found {found.describe()}; expected timm's hub layout: "
        f"config.json + model.safetensors, as timm.models._hub.save_for_hf writes; a vidistill export with "
        f"encoder.safetensors; a vidistill run folder or checkpoint.pt; or a .safetensors file)"
    )


def _read(spec: str, reader, *args):
    """A runtime reader's result, its CheckpointError as this --init's error."""
    try:
        return reader(*args)
    except CheckpointError as e:
        raise InitError(f"--init {spec}: {e}") from None


def _looks_like_path(spec: str) -> bool:
    return os.sep in spec or spec.startswith(".") or spec.endswith((".safetensors", ".pt", ".pth", ".bin"))


def vit_architecture(what: str, arch: str, model_args: dict) -> tuple[int, dict]:
    """(patch size, model_args) of a timm ViT, built on the meta device (no memory, no weights)."""
    import timm

    args = architecture_args(model_args)
    try:
        with torch.device("meta"):
            backbone = build_vit(arch, 224, args)
    except ArchitectureError as e:
        if timm.is_model(arch):  # a family without img_size / dynamic_img_size: ResNet, ConvNeXt, ...
            raise InitError(f"{what}: {arch} is not a ViT with patch tokens ({NOT_A_VIT}): {e}") from None
        raise InitError(f"{what}: {e}") from None
    if not all(hasattr(backbone, a) for a in ("patch_embed", "blocks", "num_prefix_tokens")):
        raise InitError(f"{what}: {arch} ({type(backbone).__name__}) is not a ViT with patch tokens ({NOT_A_VIT})")
    return patch_size_of(backbone), args


def _from_contract(spec: str, kind: str, contract: EncoderContract, location: Path) -> PretrainedInit:
    patch, args = vit_architecture(f"--init {spec}", contract.model_name, dict(contract.model_args))
    return PretrainedInit(spec, kind, contract.model_name, args, patch, location, contract.mean, contract.std,
                          contract.image_size)


def _from_timm_name(spec: str, model_args: dict) -> PretrainedInit:
    import timm
    from timm.models import get_pretrained_cfg, split_model_name_tag

    if not timm.is_model(spec):
        raise InitError(
            f"--init {spec}: no such file or folder, and not a timm model name "
            f"(e.g. vit_small_patch14_reg4_dinov2.lvd142m, vit_small_patch16_dinov3.lvd1689m)"
        )
    arch, tag = split_model_name_tag(spec)
    try:
        pcfg = get_pretrained_cfg(spec)
    except RuntimeError:  # timm: "Invalid pretrained tag (...) for ..."
        pcfg = None
    if pcfg is None or not (pcfg.hf_hub_id or pcfg.url or pcfg.file):
        known = timm.list_pretrained(f"{arch}.*")
        what = f"no pretrained tag {tag!r} for {arch}" if tag else f"no pretrained weights for {arch} without a tag"
        raise InitError(
            f"--init {spec}: timm has {what}; "
            + (f"the tags it knows: {', '.join(known)}" if known else "it knows no pretrained weights for this architecture")
        )
    patch, args = vit_architecture(f"--init {spec}", arch, model_args)
    cfg = pcfg.to_dict()
    mean, std = (tuple(cfg["mean"]), tuple(cfg["std"])) if len(cfg.get("mean") or ()) == 3 else (None, None)
    return PretrainedInit(spec, "timm", arch, args, patch, None, mean, std)


def _from_hub_folder(spec: str, folder: Path, weights: Path) -> PretrainedInit:
    config = _read(spec, read_json, folder / CONFIG_NAME)
    if not isinstance(config.get("architecture"), str):
        raise InitError(f"--init {spec}: {folder / CONFIG_NAME} is not a timm hub config (no 'architecture')")
    if not weights.is_file():
        raise InitError(f"--init {spec}: no weights in {folder} (looked for *.safetensors and {TORCH_BIN})")
    try:
        contract = contract_from_timm_config(config)
    except ArchitectureError as e:
        vit_architecture(f"--init {spec}", config["architecture"], config.get("model_args") or {})  # the clearer error
        raise InitError(f"--init {spec}: {e}") from None
    return _from_contract(spec, "hub folder", contract, weights)


def _from_safetensors(spec: str, path: Path, arch: str, model_args: dict) -> PretrainedInit:
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise InitError(f"--init {spec}: not a readable .safetensors file: {e}") from None
    if "vidistill" in meta:  # written by `vidistill export`: the contract names the architecture
        return _from_contract(spec, "safetensors", EncoderContract.from_json(meta["vidistill"]), path)
    if not arch:
        raise InitError(f"--init {spec}: a bare .safetensors needs --arch (the timm name it belongs to)")
    patch, args = vit_architecture(f"--init {spec}", arch, model_args)
    return PretrainedInit(spec, "safetensors", arch, args, patch, path)


# ------------------------------------------------------------------------------ loading
def init_state_dict(init: PretrainedInit, image_size: int, target: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """The init's backbone weights fitted to ``target`` (default: the architecture at
    ``image_size``, built on the meta device: shapes only, no second model in memory)."""
    if target is None:
        with torch.device("meta"):
            target = build_backbone(init.arch, image_size, 0.0, init.model_args)
    if init.kind == "timm":
        state = _timm_pretrained_state(init, image_size)
    elif init.kind in ("run", "checkpoint"):
        state = _read(init.spec, backbone_state, init.location)[0]
    else:
        from timm.models import load_state_dict

        try:
            state = load_state_dict(str(init.location), weights_only=True)
        except Exception as e:  # noqa: BLE001 - torch/safetensors raise many types for a bad file
            raise InitError(f"--init {init.spec}: cannot read {init.location}: {e}") from None
    return _fit_to(target, state, init)


def _timm_pretrained_state(init: PretrainedInit, image_size: int) -> dict[str, torch.Tensor]:
    """A hub name's weights, read by timm's pretrained machinery (the one model it builds)."""
    try:
        from huggingface_hub.errors import LocalEntryNotFoundError as unreachable
    except ImportError:  # pragma: no cover - huggingface_hub < 0.23
        unreachable = OSError
    try:
        model = build_backbone(init.spec, image_size, 0.0, init.model_args, pretrained=True)
    except (unreachable, OSError) as e:
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME") or "~/.cache/huggingface"
        raise InitError(
            f"--init {init.spec}: the pretrained weights are not in the Hugging Face cache ({cache}) and "
            f"the hub {'is switched off (HF_HUB_OFFLINE=1)' if offline else 'cannot be reached'}. Either run "
            f"once with network to fill the cache, or pass a local folder: on a machine with network, "
            f"`python -c \"import timm; m = timm.create_model('{init.spec}', pretrained=True); "
            f"timm.models._hub.save_for_hf(m, 'weights/', safe_serialization=True)\"`, copy weights/ here and "
            f"use --init weights/ ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from None
    return model.state_dict()


def _fit_to(target: nn.Module, state: dict[str, torch.Tensor], init: PretrainedInit) -> dict[str, torch.Tensor]:
    """timm's ``checkpoint_filter_fn`` for the target's family, then a strict key/shape check."""
    filter_fn = getattr(importlib.import_module(type(target).__module__), "checkpoint_filter_fn", None)
    state = _fit_patch_grid(target, state, init)
    raw = state
    if filter_fn is not None:
        try:
            state = filter_fn(state, target)
        except Exception:  # noqa: BLE001 - a foreign state dict can break the filter anywhere
            state = raw  # report the mismatch on the file's own keys below
    expected = target.state_dict()
    # A classifier in the file (num_classes > 0) is not part of the encoder.
    state = {k: v for k, v in state.items() if not (k.startswith("head.") and k not in expected)}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: init {tuple(state[k].shape)} vs {init.arch} {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        for label, items in (("shape mismatch", shapes), ("missing in the init", missing), ("not in the model", unexpected)):
            if items:
                shown = ", ".join(items[:SHOWN_MISMATCHES]) + (f", ... ({len(items)} in all)" if len(items) > SHOWN_MISMATCHES else "")
                parts.append(f"{label}: {shown}")
        hint = " (pass the right --arch)" if init.kind == "safetensors" else ""
        raise InitError(
            f"--init {init.spec}: the weights do not match {init.arch} {init.model_args or ''}{hint}. " + "; ".join(parts)
        )
    return {k: v.to(expected[k].dtype) for k, v in state.items()}


def _fit_patch_grid(target: nn.Module, state: dict[str, torch.Tensor], init: PretrainedInit) -> dict:
    """The patch kernels must be the target's (timm's filter would resize a patch-8 file into a
    patch-16 model without a word); the learned position embedding is resampled here from the grid
    it was saved at (the file's size when it says, else the square its token count makes) to the
    target's, so timm's filter never guesses a grid."""
    kernel, mine = state.get("patch_embed.proj.weight"), getattr(getattr(target, "patch_embed", None), "proj", None)
    if kernel is not None and mine is not None and kernel.ndim == 4 and kernel.shape[-2:] != mine.weight.shape[-2:]:
        raise InitError(
            f"--init {init.spec}: patch embedding patch_embed.proj.weight {tuple(kernel.shape)} (patch "
            f"{kernel.shape[-2]}x{kernel.shape[-1]}) does not fit {init.arch} {tuple(mine.weight.shape)}: the "
            f"weights belong to another patch size (pass the matching --arch)"
        )
    pos = state.get("pos_embed")
    if pos is None or pos.ndim != 3 or getattr(target, "pos_embed", None) is None:
        return state
    grid = saved_grid(pos, prefix_in_pos_embed(target), init.saved_size, init.patch_size)
    return _read(init.spec, resample_pos_embed, state, target, grid, init.location or init.spec)


def load_init(backbone: nn.Module, init: PretrainedInit, image_size: int) -> None:
    """Copy the init's weights into ``backbone`` (built by ``build_backbone`` at ``image_size``)."""
    state = init_state_dict(init, image_size, target=backbone)
    try:
        backbone.load_state_dict(state, strict=True)
    except RuntimeError as e:  # pragma: no cover - _fit_to checked keys and shapes
        raise CheckpointError(f"--init {init.spec}: {e}") from None
    log.info("initialised the backbone from %s", init.describe())
