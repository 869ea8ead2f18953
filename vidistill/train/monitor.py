"""What a run reports: JSON lines per step, optional TensorBoard, and collapse detection."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from vidistill.errors import VidistillError

log = logging.getLogger(__name__)


REMEDIES = (
    "docs/METHOD.md's remedies, one at a time: a lower or constant teacher temperature "
    "(optim.teacher_temp, optim.warmup_teacher_temp), teacher momentum 0.996-0.9995 "
    "(optim.momentum_teacher), a longer frozen last layer (optim.freeze_last_layer_epochs), a "
    "larger model.out_dim, a larger lr than 5e-4*B/256 for short runs (--lr, optim.scale_lr=false)"
)


class CollapseDetector:
    """Watches each branch's teacher targets through their entropy and KL (docs/METHOD.md pitfalls).

    * Uniform collapse: H(p_T) ≥ 0.97·log(out_dim) with a small KL (the loss sits at
      log(out_dim); measured collapsed runs sit at 0.98 with KL ≈ 0.1). One-hot collapse:
      H(p_T) ≈ 0 with a small KL (every image maps to one prototype). A few consecutive flagged
      steps are needed, since the first steps of a run look uniform too. This is ``collapsed``.
    * Near-uniform targets: H(p_T) ≥ ``near_uniform``·log(out_dim) for ``near_uniform_steps``
      steps in a row, whatever the KL. Not a collapse yet, but the targets carry little to learn
      (measured: cpu-tiny on the sample robot log sat at 0.84-0.87 with KL ≈ 0.4 for 450 of 600
      steps, where the preset's collapse sweep had ~3.5 nats = 0.42 at 150 steps). Warned once,
      and again each time the streak doubles, with how long and what to try.
    """

    def __init__(self, out_dim: int, patience: int = 20, kl_eps: float = 0.15,
                 near_uniform: float = 0.8, near_uniform_steps: int = 100):
        self.log_k = math.log(out_dim)
        self.patience = patience
        self.kl_eps = kl_eps
        self.near_uniform = near_uniform
        self.near_uniform_steps = near_uniform_steps
        self._streak: dict[str, int] = {}
        self._warned: set[str] = set()
        self._uniform_streak: dict[str, int] = {}
        self._uniform_next_warning: dict[str, int] = {}

    def mode(self, entropy: float, kl: float) -> str | None:
        if kl > self.kl_eps:
            return None
        if entropy >= 0.97 * self.log_k:
            return "uniform"
        if entropy <= 0.05:
            return "one-hot"
        return None

    def update(self, stats: dict[str, float], step: int) -> bool:
        """Feed one step's record; True while some branch is collapsed."""
        collapsed = False
        for branch in ("dense", "global"):
            if f"{branch}/teacher_entropy" not in stats:
                continue
            entropy, kl = stats[f"{branch}/teacher_entropy"], stats[f"{branch}/kl"]
            self._watch_near_uniform(branch, entropy, kl, step)
            mode = self.mode(entropy, kl)
            self._streak[branch] = self._streak.get(branch, 0) + 1 if mode else 0
            if self._streak[branch] >= self.patience:
                collapsed = True
                if branch not in self._warned:
                    self._warned.add(branch)
                    log.warning(
                        "the %s branch looks collapsed (%s) since step %d: teacher entropy %.3f "
                        "(log out_dim = %.3f), KL %.2g. Try %s.",
                        branch, mode, step - self.patience + 1, entropy, self.log_k, kl, REMEDIES,
                    )
        return collapsed

    def _watch_near_uniform(self, branch: str, entropy: float, kl: float, step: int) -> None:
        if entropy < self.near_uniform * self.log_k:
            self._uniform_streak[branch] = 0
            self._uniform_next_warning[branch] = self.near_uniform_steps
            return
        streak = self._uniform_streak[branch] = self._uniform_streak.get(branch, 0) + 1
        if streak < self._uniform_next_warning.setdefault(branch, self.near_uniform_steps):
            return
        self._uniform_next_warning[branch] = 2 * streak
        log.warning(
            "the %s branch's teacher targets have been near-uniform for %d steps (since step %d): "
            "entropy %.2f*log(out_dim) (%.2f of %.2f nats), KL to the student %.2g. Not a collapse "
            "by the %s rule, but the student learns little from such targets. Try %s.",
            branch, streak, step - streak + 1, entropy / self.log_k, entropy, self.log_k, kl,
            "'collapsed'", REMEDIES,
        )


def tensorboard_writer() -> type:
    """TensorBoard's ``SummaryWriter``, or a clear error when the package is missing (checked
    before training starts, so nothing is half-written)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise VidistillError(
            "--tensorboard needs the tensorboard package: pip install 'vidistill[tb]' (or drop --tensorboard)"
        ) from None
    return SummaryWriter


class RunLogger:
    """``log.jsonl`` (one JSON object per step; appended across resumes) and TensorBoard."""

    def __init__(self, run_dir: Path, tensorboard: bool = False):
        self.path = Path(run_dir) / "log.jsonl"
        self._file = open(self.path, "a", buffering=1)  # noqa: SIM115 - closed in close()
        self._tb = None
        if tensorboard:
            self._tb = tensorboard_writer()(log_dir=str(Path(run_dir) / "tensorboard"))

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "step":
                    self._tb.add_scalar(k, v, record["step"])

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def read_log(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "log.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
