"""What a run reports: JSON lines per step, optional TensorBoard, and collapse detection."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from vidistill.errors import VidistillError

log = logging.getLogger(__name__)


class CollapseDetector:
    """Flags a branch whose teacher has collapsed, from its entropy and KL (METHOD.md pitfalls).

    Uniform collapse: H(p_T) ≥ 0.97·log(out_dim) with a small KL (the loss sits at
    log(out_dim); measured collapsed runs sit at 0.98 with KL ≈ 0.1, healthy ones below 0.95).
    One-hot collapse: H(p_T) ≈ 0 with a small KL (every image maps to one prototype). A few
    consecutive flagged steps are needed, since the first steps of a run look uniform too.
    """

    def __init__(self, out_dim: int, patience: int = 20, kl_eps: float = 0.15):
        self.log_k = math.log(out_dim)
        self.patience = patience
        self.kl_eps = kl_eps
        self._streak: dict[str, int] = {}
        self._warned: set[str] = set()

    def mode(self, entropy: float, kl: float) -> str | None:
        if kl > self.kl_eps:
            return None
        if entropy >= 0.97 * self.log_k:
            return "uniform"
        if entropy <= 0.05:
            return "one-hot"
        return None

    def update(self, stats: dict[str, float], step: int) -> bool:
        collapsed = False
        for branch in ("dense", "global"):
            if f"{branch}/teacher_entropy" not in stats:
                continue
            mode = self.mode(stats[f"{branch}/teacher_entropy"], stats[f"{branch}/kl"])
            self._streak[branch] = self._streak.get(branch, 0) + 1 if mode else 0
            if self._streak[branch] >= self.patience:
                collapsed = True
                if branch not in self._warned:
                    self._warned.add(branch)
                    log.warning(
                        "the %s branch looks collapsed (%s) since step %d: teacher entropy %.3f "
                        "(log out_dim = %.3f), KL %.2g. Remedies (METHOD.md): lower/constant teacher "
                        "temperature, teacher momentum 0.996-0.9995, longer frozen last layer, larger "
                        "out_dim, a larger lr than 5e-4*B/256 for short runs.",
                        branch, mode, step - self.patience + 1, stats[f"{branch}/teacher_entropy"],
                        self.log_k, stats[f"{branch}/kl"],
                    )
        return collapsed


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
