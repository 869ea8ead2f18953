"""What a run reports: JSON lines per step, optional TensorBoard, and collapse detection."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
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


@dataclass(frozen=True)
class RunFacts:
    """What a run is made of, for advice that names the settings most likely at fault *here*."""

    out_dim: int
    teacher_temp: float  # after the warm-up
    momentum_teacher: float
    peak_lr: float  # after batch scaling
    batch: int  # clips per step, all processes
    clips_per_epoch: int
    total_steps: int
    targets_per_clip: int = 2  # [CLS] targets one clip gives the global branch (K−1, or 2 for DINO)
    patches: int = 1  # patch targets per global view (the dense branch)
    rows_per_process: dict[str, int] | None = None  # target rows a batch gives each branch, one process
    centring: str = "ema"
    world_size: int = 1

    @classmethod
    def of(cls, cfg: Any, clips_per_epoch: int, total_steps: int, world_size: int = 1, patches: int = 1) -> RunFacts:
        o = cfg.optim
        batch = o.batch_size * world_size
        per_clip = 2 if cfg.objective.is_frame_dino else max(cfg.data.num_frames - 1, 1)
        return cls(
            out_dim=cfg.model.out_dim, teacher_temp=o.teacher_temp, momentum_teacher=o.momentum_teacher,
            peak_lr=o.base_lr * (batch / 256.0 if o.scale_lr else 1.0), batch=batch,
            clips_per_epoch=clips_per_epoch, total_steps=total_steps, targets_per_clip=per_clip,
            patches=patches,
            rows_per_process={"global": o.batch_size * per_clip, "dense": o.batch_size * per_clip * patches},
            centring=o.centring, world_size=world_size,
        )

    def entropy_floor(self, branch: str) -> float:
        """The least target entropy (nats) the centring allows a branch's rows.

        Sinkhorn-Knopp gives every prototype the same share of a batch (1/K of its mass) and
        every row (a target) 1/N of it. With K prototypes and N < K rows across all processes,
        a row can only fill itself from at least K/N prototypes: its entropy is at least
        log(K/N) (at batch 8, 16 [CLS] rows and K = 4096: 0.67 log K). DINO's running-mean centre
        sets no such floor."""
        rows = self.target_rows(branch)
        if self.centring != "sinkhorn_knopp" or not rows:
            return 0.0
        return max(math.log(self.out_dim / rows), 0.0)

    def target_rows(self, branch: str) -> int:
        """Target rows a step gives ``branch`` over all processes (0 when unknown)."""
        return (self.rows_per_process or {}).get(branch, 0) * self.world_size


def uniform_causes(facts: RunFacts, branch: str, entropy: float, step: int) -> list[str]:
    """The settings most likely keeping ``branch``'s targets near-uniform in this run, most
    likely first (each with the number that makes it likely)."""
    log_k = math.log(facts.out_dim)
    causes = []
    floor = facts.entropy_floor(branch)
    if floor > 0.5 * log_k:
        rows = facts.target_rows(branch)
        causes.append(
            f"Sinkhorn-Knopp centring spreads each of the batch's {rows} {branch} targets over at least "
            f"out_dim/{rows} prototypes ({floor:.2f} nats, {floor / log_k:.2f}*log(out_dim)): a larger batch or "
            f"a smaller model.out_dim lowers that floor"
        )
    # Near-uniform targets are softmax(spread / τ_T): for a small spread their entropy deficit
    # grows as 1/τ_T² (x4 when τ_T halves), less once the targets are sharp. Measured on the
    # adaptation benchmark's base with a fresh head: 0.9-1.1 nats at 0.04, 2.8-3.2 at 0.02 (x3).
    deficit = max(log_k - entropy, 1e-3)
    halved = min(3 * deficit, log_k)
    causes.append(
        f"the teacher temperature {facts.teacher_temp:g} is too high for how little the teacher's "
        f"outputs differ between inputs (entropy deficit {deficit:.2f} nats); at "
        f"{facts.teacher_temp / 2:g} it would be about {halved:.1f} nats "
        f"({(log_k - halved) / log_k:.2f}*log(out_dim)): --set optim.teacher_temp={facts.teacher_temp / 2:g} "
        f"--set optim.warmup_teacher_temp={facts.teacher_temp / 2:g}"
    )
    seen = step * facts.batch * (facts.targets_per_clip if branch == "global" else 1)
    distinct = facts.clips_per_epoch * facts.targets_per_clip
    if facts.out_dim > 4 * min(seen, distinct):
        causes.insert(0 if facts.out_dim > 16 * min(seen, distinct) else 1,
            f"model.out_dim {facts.out_dim} is far larger than the {min(seen, distinct)} "
            f"{'distinct ' if distinct < seen else ''}[CLS] targets this run has "
            f"{'in its video' if distinct < seen else 'produced so far'}: most prototypes are never a "
            f"target and each gets almost no gradient; try --out-dim {_pow2_below(max(min(seen, distinct), 256))}"
        )
    half_life = math.log(2) / max(1.0 - facts.momentum_teacher, 1e-9)
    if half_life > facts.total_steps / 4:
        causes.append(
            f"teacher momentum {facts.momentum_teacher:g} averages over ~{half_life:.0f} steps, "
            f"more than a quarter of this {facts.total_steps}-step run, so the teacher barely "
            "follows what the student learns: try 0.99-0.996 for a short run"
        )
    if facts.peak_lr < 2e-4:
        causes.append(
            f"the peak lr {facts.peak_lr:.1e} (5e-4 x batch {facts.batch}/256 when optim.scale_lr) is too "
            "small to move the head in a short run: --lr 5e-4 --set optim.scale_lr=false"
        )
    return causes


def _pow2_below(n: int) -> int:
    return 2 ** int(math.log2(max(n, 1)))


class CollapseDetector:
    """Watches each branch's teacher targets through their entropy and KL (docs/METHOD.md pitfalls).

    * Uniform collapse: H(p_T) ≥ 0.97·log(out_dim) with a small KL (the loss sits at
      log(out_dim); measured collapsed runs sit at 0.98 with KL ≈ 0.1). One-hot collapse:
      H(p_T) ≈ 0 with a small KL (every image maps to one prototype). A few consecutive flagged
      steps are needed, since the first steps of a run look uniform too. This is ``collapsed``.
    * Near-uniform targets: H(p_T) ≥ ``near_uniform``·log(out_dim) for ``near_uniform_steps``
      steps in a row, whatever the KL (with Sinkhorn-Knopp centring, ``near_uniform`` of the way
      from its floor log(K/N) to log K: ``RunFacts.entropy_floor``). Not a collapse yet, but the targets carry little to learn
      (measured: the adaptation benchmark's ``adapt`` rows sat at 0.92-0.95 for 1000 steps while
      the loss never left log(out_dim)). Warned once, and again each time the streak doubles,
      with how long and the settings most likely at fault in this run (``uniform_causes``).
    * Partial collapse: sharp targets that all land on a few prototypes. ``prototypes_used``
      (exp of the batch-mean target entropy) below ``few_prototypes`` of what the batch could
      use (min(out_dim, its target rows); rows of one image or clip are alike, so a healthy batch
      measured 0.4-1.2 of that) for ``patience`` steps is warned once.
    """

    def __init__(self, out_dim: int, patience: int = 20, kl_eps: float = 0.15,
                 near_uniform: float = 0.8, near_uniform_steps: int = 100,
                 facts: RunFacts | None = None, few_prototypes: float = 0.25):
        self.log_k = math.log(out_dim)
        self.out_dim = out_dim
        self.patience = patience
        self.kl_eps = kl_eps
        self.near_uniform = near_uniform
        self.near_uniform_steps = near_uniform_steps
        self.facts = facts
        self.few_prototypes = few_prototypes
        self._streak: dict[str, int] = {}
        self._warned: set[str] = set()
        self._uniform_streak: dict[str, int] = {}
        self._uniform_next_warning: dict[str, int] = {}
        self._few_streak: dict[str, int] = {}

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
            self._watch_prototypes(branch, entropy, stats.get(f"{branch}/prototypes_used"), step)
            mode = self.mode(entropy, kl)
            self._streak[branch] = self._streak.get(branch, 0) + 1 if mode else 0
            if self._streak[branch] >= self.patience:
                collapsed = True
                if branch not in self._warned:
                    self._warned.add(branch)
                    log.warning(
                        "the %s branch looks collapsed (%s) since step %d: teacher entropy %.3f "
                        "(log out_dim = %.3f), KL %.2g. Try %s.",
                        branch, mode, step - self.patience + 1, entropy, self.log_k, kl, self._advice(branch, entropy, step),
                    )
        return collapsed

    def _advice(self, branch: str, entropy: float, step: int) -> str:
        if self.facts is None:
            return REMEDIES
        causes = uniform_causes(self.facts, branch, entropy, step)
        return "; ".join(f"({i}) {c}" for i, c in enumerate(causes, 1)) + f". In general: {REMEDIES}"

    def _watch_prototypes(self, branch: str, entropy: float, used: float | None, step: int) -> None:
        """Sharp rows (entropy well under log K) spread over few prototypes: partial collapse."""
        rows = (self.facts.rows_per_process or {}).get(branch) if self.facts else None
        if used is None or rows is None or entropy > 0.5 * self.log_k:
            self._few_streak[branch] = 0
            return
        # Sharp rows that point at different things spread the batch over up to min(out_dim,
        # rows) prototypes (a batch of 16 [CLS] targets can use 16 at most, 576 patch targets
        # hundreds). A quarter of that means most inputs get the same few targets.
        if used >= self.few_prototypes * min(self.out_dim, rows):
            self._few_streak[branch] = 0
            return
        streak = self._few_streak[branch] = self._few_streak.get(branch, 0) + 1
        key = f"{branch}/few"
        if streak >= self.patience and key not in self._warned:
            self._warned.add(key)
            log.warning(
                "the %s branch's targets are sharp but use only %.0f of %d prototypes per batch "
                "(exp of the batch-mean entropy) since step %d: partial collapse, most inputs get the "
                "same few targets. Try a lower model.out_dim, a higher optim.teacher_temp, or "
                "optim.center_momentum closer to 0 (a faster centre).",
                branch, used, self.out_dim, step - streak + 1,
            )

    def _watch_near_uniform(self, branch: str, entropy: float, kl: float, step: int) -> None:
        # Measured from the least entropy the centring allows (Sinkhorn-Knopp's log(K/N)), so a
        # batch-balanced target is not called uniform for the softness the balancing imposes.
        floor = self.facts.entropy_floor(branch) if self.facts else 0.0
        if entropy - floor < self.near_uniform * (self.log_k - floor):
            self._uniform_streak[branch] = 0
            self._uniform_next_warning[branch] = self.near_uniform_steps
            return
        streak = self._uniform_streak[branch] = self._uniform_streak.get(branch, 0) + 1
        if streak < self._uniform_next_warning.setdefault(branch, self.near_uniform_steps):
            return
        self._uniform_next_warning[branch] = 2 * streak
        log.warning(
            "the %s branch's teacher targets have been near-uniform for %d steps (since step %d): "
            "entropy %.2f*log(out_dim) (%.2f of %.2f nats%s), KL to the student %.2g. Not a collapse "
            "by the %s rule, but the student learns little from such targets. Likely causes in this "
            "run: %s.",
            branch, streak, step - streak + 1, entropy / self.log_k, entropy, self.log_k,
            f"; the centring's floor is {floor:.2f}" if floor else "", kl,
            "'collapsed'", self._advice(branch, entropy, step),
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
