"""Writing checkpoints: atomically, in the format :mod:`vidistill.runtime.checkpoints` reads.

A run folder holds ``config.yaml`` (the resolved config), ``checkpoint.pt`` (the latest good
state) and ``log.jsonl``. Reading a checkpoint belongs to the runtime (torch only, no training
code: a robot can serve a run folder); writing one belongs here, with training.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from vidistill.runtime.checkpoints import FORMAT, FORMAT_VERSION
from vidistill.runtime.names import CHECKPOINT_NAME
from vidistill.runtime.timm_vit import contract_of

if TYPE_CHECKING:
    from vidistill.config import Config


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


def build_state(cfg: Config, student: nn.Module, teacher: nn.Module, **extra: Any) -> dict:
    """The checkpoint dict; ``extra`` carries the trainer's optimiser/scaler/progress/RNG state."""
    contract = contract_of(
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
