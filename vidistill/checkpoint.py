"""Checkpoints: written atomically, loaded safely (``weights_only=True``), validated.

A run folder holds ``config.yaml`` (the resolved config), ``checkpoint.pt`` (the latest good
state) and ``log.jsonl``. Export, eval and the adapters find the teacher through here, so a
wrong or truncated file gets one clear message wherever it is used.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vidistill.config import Config
from vidistill.contract import EncoderContract
from vidistill.errors import CheckpointError

FORMAT = "vidistill-checkpoint"
FORMAT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"
DEFAULT_RUNS_DIR = Path("runs")


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary file in the same folder, fsync, then rename over ``path``.

    A run killed mid-write leaves the previous checkpoint intact: rename is atomic on POSIX.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def find_checkpoint(path: str | Path | None) -> Path:
    """A checkpoint file, a run folder (its checkpoint.pt), or None: the latest run in runs/."""
    if path is None:
        candidates = sorted(
            DEFAULT_RUNS_DIR.glob(f"*/{CHECKPOINT_NAME}"), key=lambda p: p.stat().st_mtime
        )
        if not candidates:
            raise CheckpointError(
                f"no run found under {DEFAULT_RUNS_DIR.resolve()}/ (train one with "
                "`vidistill train --video PATH`, or give a run folder or checkpoint)"
            )
        return candidates[-1]
    path = Path(path)
    if path.is_dir():
        ckpt = path / CHECKPOINT_NAME
        if not ckpt.is_file():
            raise CheckpointError(f"{path}: no {CHECKPOINT_NAME} in this folder (is it a vidistill run?)")
        return ckpt
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    return path


def load_checkpoint(path: str | Path) -> dict:
    """Load and validate a vidistill checkpoint with ``weights_only=True`` (no code runs)."""
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


def load_teacher_backbone(
    path: str | Path | None, branch: str = "teacher"
) -> tuple[nn.Module, EncoderContract, Path]:
    """The teacher's backbone (what gets exported and evaluated), in eval mode, on CPU.

    ``path``: checkpoint file, run folder, or None for the latest run. Returns the timm model,
    its input contract and the checkpoint path actually used. ``branch="student"`` loads the
    student's backbone instead: a diagnostic, e.g. when a slow EMA teacher hides what the
    student has learned.
    """
    from vidistill.model.backbone import build_backbone

    if branch not in ("teacher", "student"):
        raise ValueError(f"branch must be 'teacher' or 'student', not {branch!r}")
    ckpt = find_checkpoint(path)
    state = load_checkpoint(ckpt)
    contract = EncoderContract.from_dict(state["contract"])
    backbone = build_backbone(
        contract.model_name, contract.image_size, drop_path=0.0, model_args=contract.model_args
    )
    prefix = "backbone."
    weights = {k[len(prefix) :]: v for k, v in state[branch].items() if k.startswith(prefix)}
    try:
        backbone.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{ckpt}: {branch} weights do not match {contract.model_name}: {e}") from None
    return backbone.eval(), contract, ckpt


def build_state(cfg: Config, student: nn.Module, teacher: nn.Module, **extra: Any) -> dict:
    """The checkpoint dict; ``extra`` carries the trainer's optimiser/scaler/progress/RNG state."""
    from vidistill.model.backbone import contract_for

    contract = contract_for(
        teacher.backbone, cfg.model.arch, cfg.data.global_size, cfg.data.mean, cfg.data.std,
        cfg.model.model_args,
    )
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "config": cfg.to_dict(),
        "contract": contract.to_dict(),
        "student": student.state_dict(),
        "teacher": teacher.state_dict(),
        **extra,
    }


def write_random_init_checkpoint(cfg: Config, path: str | Path, seed: int = 0) -> Path:
    """A valid checkpoint of an untrained model: the 'random init' row of Table 1, and test data."""
    from vidistill.model.networks import Student, Teacher

    torch.manual_seed(seed)
    student = Student(cfg)
    teacher = Teacher(student)
    path = Path(path)
    if path.suffix != ".pt":
        path = path / CHECKPOINT_NAME
    atomic_save(build_state(cfg, student, teacher, progress={"epoch": 0, "step": 0}), path)
    return path
