"""Read a vidistill training checkpoint with torch alone (``weights_only=True``, no training code).

The runtime serves a run's teacher from here, so a robot that has only a run folder needs
torch + timm, never the trainer, the config or the data pipeline. Writing checkpoints stays
with training (:mod:`vidistill.train.checkpoint`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vidistill.contract import EncoderContract
from vidistill.errors import CheckpointError

from .names import CHECKPOINT_NAME

FORMAT = "vidistill-checkpoint"
FORMAT_VERSION = 1
DEFAULT_RUNS_DIR = Path("runs")
BRANCHES = ("teacher", "student")


def find_checkpoint(path: str | Path | None) -> Path:
    """A checkpoint file, a run folder (its checkpoint.pt), or None: the latest run in runs/."""
    if path is None:
        candidates = sorted(DEFAULT_RUNS_DIR.glob(f"*/{CHECKPOINT_NAME}"), key=lambda p: p.stat().st_mtime)
        if not candidates:
            raise CheckpointError(
                f"no run found under {DEFAULT_RUNS_DIR.resolve()}/ (train one with "
                "`vidistill train --video PATH`, or give a run folder or checkpoint)"
            )
        return candidates[-1]
    from .artefacts import find_artefacts

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    found = find_artefacts(path) if path.is_dir() else None
    if found is not None and found.checkpoint is None:
        raise CheckpointError(f"{path}: no {CHECKPOINT_NAME} in this folder (is it a vidistill run?)")
    return path if found is None else found.checkpoint


def load_checkpoint(path: str | Path) -> dict:
    """Load and validate a vidistill checkpoint with ``weights_only=True`` (no code runs)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: checkpoint file is empty (0 bytes)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, pickle of foreign classes, not a torch file at all
        raise CheckpointError(
            f"{path}: cannot be read as a vidistill checkpoint (truncated or not a PyTorch "
            f"checkpoint): {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a vidistill checkpoint (no '{FORMAT}' marker; a plain state_dict or "
            "another project's checkpoint cannot be used here)"
        )
    if state.get("version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format v{state['version']} is newer than this vidistill (v{FORMAT_VERSION})"
        )
    for key in ("config", "contract", "teacher"):
        if key not in state:
            raise CheckpointError(f"{path}: checkpoint has no '{key}' entry")
    return state


def backbone_state(path: str | Path | None, branch: str = "teacher") -> tuple[dict[str, Any], EncoderContract, Path]:
    """(the ``branch`` backbone's state dict, the contract, the checkpoint file used)."""
    if branch not in BRANCHES:
        raise ValueError(f"branch must be one of {BRANCHES}, not {branch!r}")
    ckpt = find_checkpoint(path)
    state = load_checkpoint(ckpt)
    if branch not in state:
        raise CheckpointError(f"{ckpt}: checkpoint has no '{branch}' entry")
    contract = EncoderContract.from_dict(state["contract"])
    prefix = "backbone."
    weights = {k[len(prefix) :]: v for k, v in state[branch].items() if k.startswith(prefix)}
    if not weights:
        raise CheckpointError(f"{ckpt}: the {branch} holds no backbone weights")
    return weights, contract, ckpt
