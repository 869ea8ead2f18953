"""The training loop: the only place that ties data, model and objective together.

Reads like DINO's ``train_one_epoch``: schedules → forward (student, EMA teacher) → loss →
backward with per-parameter clipping → optimiser step → EMA update; with checkpoints every N
steps (atomic) that hold everything needed to resume mid-epoch.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from vidistill.config import Config, config_from_dict
from vidistill.data import build_dataloader
from vidistill.data.dataset import ClipBatch
from vidistill.data.device_views import DeviceViews, RawClipBatch
from vidistill.data.views import Normalise
from vidistill.errors import CheckpointError, TrainingError, VidistillError
from vidistill.model import Student, Teacher, TeacherEMA
from vidistill.model.backbone import contract_of
from vidistill.model.pretrained import load_init, resolve_init
from vidistill.objective import build_objective
from vidistill.runtime.checkpoints import load_checkpoint
from vidistill.runtime.names import CHECKPOINT_NAME
from vidistill.train.adaptation import (
    FeatureDriftProbe,
    adaptation_param_groups,
    cancel_backbone_gradients,
    probe_pixels,
    with_gram_anchor,
)
from vidistill.train.checkpoint import atomic_save, build_state
from vidistill.train.cores import CorePlan
from vidistill.train.distributed import (
    DistributedContext,
    broadcast_flag,
    cleanup_distributed,
    setup_distributed,
)
from vidistill.train.monitor import CollapseDetector, RunFacts, RunLogger, tensorboard_writer
from vidistill.train.optimizer import (
    build_optimizer,
    cancel_last_layer_gradients,
    clip_gradients_per_parameter,
    set_hyperparameters,
)
from vidistill.train.representation import representation_stats
from vidistill.train.run_lock import RunFolderBusy, RunLock
from vidistill.train.schedules import Schedules

log = logging.getLogger(__name__)

# Changing these under an existing run would silently train a different model.
RESUME_MUST_MATCH = ("objective", "model", "data.num_frames", "data.frame_stride", "data.global_size")
# A step's place in its epoch and in the schedules depends on these (saved with each checkpoint).
POSITION_NAMES = {
    "clips": "clips per epoch (data.videos, data.clip_stride)",
    "batch_size": "batch per process (--batch-size)",
    "world_size": "processes (torchrun --nproc_per_node)",
    "steps_per_epoch": "steps per epoch",
    "total_steps": "total steps (--max-steps / --epochs)",
}


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """bf16 on CUDA when supported (no scaler needed), fp16 with a scaler otherwise; CPU: off
    unless asked (bf16 autocast helps only on CPUs with AVX-512-bf16/AMX)."""
    if amp == "off":
        return None
    if amp == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]


@dataclass
class StepRecord:
    """One step's logged scalars, still on the device (``values``, in ``names`` order) until
    ``Trainer.read_records`` reads many steps' at once; ``host`` holds what the host knows."""

    step: int  # the step's index (0-based, as the schedules count)
    names: list[str]
    values: torch.Tensor
    host: dict[str, float]


class Trainer:
    def __init__(self, cfg: Config, ctx: DistributedContext):
        self.cfg, self.ctx = cfg, ctx
        self.device = ctx.device
        self.run_dir = Path(cfg.train.output)
        self.ckpt_path = self.run_dir / CHECKPOINT_NAME

        # build_config settled the architecture and crop sizes (an --init's too); a new run starts
        # from the init's weights, a resumed one from its checkpoint.
        init = None
        if cfg.model.init and not self.ckpt_path.is_file():
            init = resolve_init(cfg.model.init, cfg.model.arch, cfg.model.model_args)
        # The data decide where a step falls in an epoch and how long the schedules are; they
        # are known before a checkpoint is read, so a resume can check they have not changed.
        self.loader, self.sampler = build_dataloader(cfg, rank=ctx.rank, world_size=ctx.world_size)
        self.steps_per_epoch = len(self.loader)
        if self.steps_per_epoch == 0:
            raise VidistillError(
                f"not enough clips for one batch of {cfg.optim.batch_size} per process: "
                f"{len(self.sampler)} clips per process (lower --batch-size or add video)"
            )
        self.schedules = Schedules.build(cfg, self.steps_per_epoch, ctx.world_size)

        # Same seed on every rank for the initial weights (DDP also broadcasts rank 0's).
        torch.manual_seed(cfg.train.seed)
        self.student = Student(cfg).to(self.device)
        if init is not None:
            load_init(self.student.backbone, init, cfg.data.global_size)  # the teacher copies it
        self.teacher = Teacher(self.student).to(self.device)
        self.ema = TeacherEMA(self.student, self.teacher)
        self.collapse = CollapseDetector(
            cfg.model.out_dim,
            near_uniform_steps=cfg.train.uniform_warning_steps,
            facts=RunFacts.of(cfg, self.sampler.num_clips, self.schedules.total_steps, ctx.world_size,
                              patches=self.student.backbone.patch_embed.num_patches),
        )
        self.objective = with_gram_anchor(build_objective(cfg), cfg, self.student.backbone).to(self.device)
        self.optimizer = build_optimizer(self.student, adaptation_param_groups(self.student, cfg.adapt))
        self.drift = None  # teacher features vs the init's on fixed frames (rank 0 logs them)
        if cfg.adapt.drift_every > 0 and ctx.is_main:
            contract = contract_of(self.teacher.backbone, cfg.model.arch, cfg.data.global_size, cfg.data.mean,
                                   cfg.data.std, cfg.model.model_args)  # the one an export of this run carries
            pixels = probe_pixels(self.loader.dataset, cfg.adapt.drift_images, contract)
            self.drift = FeatureDriftProbe.at_init(self.teacher.backbone, pixels)
        self.normalise = Normalise(cfg.data.mean, cfg.data.std, self.device)  # the batches are uint8
        self.device_views = DeviceViews(cfg.data, self.device) if cfg.data.views_on == "device" else None
        self.amp_dtype = autocast_dtype(cfg.train.amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.step = 0  # optimiser steps done; the epoch and the position in it follow from it
        # Brackets each part of a step; the step profiler (benchmarks/profile_step.py) swaps in
        # a timer, training keeps this no-op.
        self.phase: Callable[[str], contextlib.AbstractContextManager] = lambda name: contextlib.nullcontext()
        if not self._resume_if_possible():
            torch.manual_seed(cfg.train.seed + 1000 * ctx.rank)  # drop-path differs per rank

        self.student_ddp: nn.Module = self.student
        if ctx.enabled:
            self.student_ddp = DistributedDataParallel(
                self.student, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.student_fwd = torch.compile(self.student_ddp) if cfg.train.compile else self.student_ddp

    def sync_interval(self) -> int:
        """Steps between host reads of the scalars (``train.sync_every``; 0 = auto)."""
        if self.cfg.train.sync_every > 0:
            return self.cfg.train.sync_every
        return 20 if self.device.type == "cuda" else 1

    def position(self) -> dict[str, int]:
        """What maps a step count to (epoch, batch in epoch) and to the schedules' values."""
        return {
            "clips": self.sampler.num_clips,
            "batch_size": self.cfg.optim.batch_size,
            "world_size": self.ctx.world_size,
            "steps_per_epoch": self.steps_per_epoch,
            "total_steps": self.schedules.total_steps,
        }

    def _check_position(self, saved: dict | None) -> None:
        if saved is None:  # written before positions were recorded: nothing to compare
            log.warning("%s records no epoch position; resuming without checking it", self.ckpt_path)
            return
        now = self.position()
        changed = [f"{POSITION_NAMES[k]} {saved.get(k)} -> {v}" for k, v in now.items() if saved.get(k) != v]
        if changed:
            raise CheckpointError(
                f"{self.ckpt_path}: cannot resume this run: {'; '.join(changed)}. Step {self.step} "
                "would land at another place in the epoch and the lr / teacher-momentum schedules "
                "would jump. Put the old settings back, or give another --output for a new run."
            )

    # ----------------------------------------------------------------------------- resume
    def _resume_if_possible(self) -> bool:
        if not self.ckpt_path.is_file():
            return False
        state = load_checkpoint(self.ckpt_path)
        saved = config_from_dict(state["config"]).to_dict()
        now = self.cfg.to_dict()
        for key in RESUME_MUST_MATCH:
            a, b = saved, now
            for part in key.split("."):
                a, b = a[part], b[part]
            if a != b:
                raise CheckpointError(
                    f"{self.ckpt_path}: the run in {self.run_dir} was trained with a different "
                    f"'{key}' ({a} vs now {b}); use another --output to start a new run"
                )
        for name in ("student", "optimizer", "objective", "progress"):
            if name not in state:
                raise CheckpointError(f"{self.ckpt_path}: no '{name}' entry; cannot resume from it")
        self.step = int(state["progress"]["step"])
        self._check_position(state["progress"].get("position"))
        self.student.load_state_dict(state["student"])
        self.teacher.load_state_dict(state["teacher"])
        self.objective.load_state_dict(state["objective"])
        if self.drift is not None:  # measured against the init, not against the resumed weights
            probe = state.get("drift_probe")
            self.drift = FeatureDriftProbe.from_state_dict(probe) if probe else None
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        # Restoring the RNG (drop-path) makes a resumed run match an uninterrupted one; the
        # data augmentation is keyed by (seed, epoch, clip) and needs no state.
        rng = state.get("rng", {})
        if self.ctx.rank < len(rng.get("torch", [])):
            torch.set_rng_state(rng["torch"][self.ctx.rank])
        if self.device.type == "cuda" and self.ctx.rank < len(rng.get("cuda", [])):
            torch.cuda.set_rng_state(rng["cuda"][self.ctx.rank])
        if self.ctx.is_main:
            log.info("resuming %s from step %d", self.ckpt_path, self.step)
        return True

    def _gather_from_ranks(self, value: torch.Tensor) -> list[torch.Tensor]:
        if not self.ctx.enabled:
            return [value]
        out = [torch.empty_like(value) for _ in range(self.ctx.world_size)]
        torch.distributed.all_gather(out, value)
        return out

    def save_checkpoint(self, finished: bool = False) -> None:
        """Collective (every rank calls it); rank 0 writes. Records each rank's RNG and a
        fingerprint of each rank's weights, so diverged DDP replicas cannot go unnoticed."""
        with torch.no_grad():
            fingerprint = torch.stack([p.double().sum() for p in self.student.parameters()]).sum()
        fingerprints = [float(f) for f in self._gather_from_ranks(fingerprint.to(self.device).reshape(1))]
        rng = {"torch": [t.cpu() for t in self._gather_from_ranks(torch.get_rng_state().to(self.device))]}
        if self.device.type == "cuda":
            rng["cuda"] = [t.cpu() for t in self._gather_from_ranks(torch.cuda.get_rng_state().to(self.device))]
        if not self.ctx.is_main:
            return
        if max(fingerprints) - min(fingerprints) > 1e-6 * max(1.0, abs(fingerprints[0])):
            log.warning("DDP replicas differ at step %d: weight fingerprints %s", self.step, fingerprints)
        state = build_state(
            self.cfg,
            self.student,
            self.teacher,
            objective=self.objective.state_dict(),
            optimizer=self.optimizer.state_dict(),
            scaler=self.scaler.state_dict() if self.scaler.is_enabled() else None,
            progress={
                "step": self.step,
                "epoch": self.step // self.steps_per_epoch,
                "batches_in_epoch": self.step % self.steps_per_epoch,
                "finished": finished,
                "position": self.position(),
            },
            replica_fingerprints=fingerprints,
            rng=rng,
            drift_probe=self.drift.state_dict() if self.drift is not None else None,
        )
        atomic_save(state, self.ckpt_path)

    # ------------------------------------------------------------------------------ loop
    def train_step(self, batch, step: int) -> dict[str, float]:
        """One optimiser step; its record read at once (tests, the profiler)."""
        return self.read_records([self.step_lazily(batch, step)])[0]

    def model_input(self, batch: ClipBatch | RawClipBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch as the model's float views on the device: (globals, locals)."""
        if isinstance(batch, RawClipBatch):
            if self.device_views is None:
                raise TypeError("a RawClipBatch needs data.views_on=device")
            return self.device_views(batch)
        return (self.normalise(batch.globals.to(self.device, non_blocking=True)),
                self.normalise(batch.locals.to(self.device, non_blocking=True)))

    def step_lazily(self, batch, step: int) -> StepRecord:
        """One optimiser step whose scalars stay on the device until :meth:`read_records`: no
        host sync, so the CPU can queue the next step's kernels while the GPU runs this one."""
        sch, phase = self.schedules, self.phase
        set_hyperparameters(self.optimizer, sch.lr[step], sch.weight_decay[step], sch.backbone_lr_factor(step))
        tau_t = sch.teacher_temp[step]
        with phase("to device"):
            globals_, locals_ = self.model_input(batch)

        with phase("forward + losses"), torch.autocast(
            self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
        ):
            loss, stats = self.objective(self.student_fwd, self.teacher, globals_, locals_, tau_t)
        with phase("stats stack"):
            values = torch.stack([loss.detach().float(), *(v.detach().float() for v in stats.values())])

        with phase("backward"):
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
        with phase("clip + optimizer"):
            self.scaler.unscale_(self.optimizer)
            clip_gradients_per_parameter(self.student, self.cfg.optim.clip_grad)
            if sch.last_layer_frozen(step):
                cancel_last_layer_gradients(self.student.head)
            if sch.backbone_frozen(step):
                cancel_backbone_gradients(self.student)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        with phase("EMA"):
            self.ema(sch.momentum[step])
        host = {"lr": sch.lr[step], "wd": sch.weight_decay[step], "momentum": sch.momentum[step], "teacher_temp": tau_t}
        every = self.cfg.train.monitor_every
        if every > 0 and (step % every == 0 or step + 1 == sch.total_steps):
            with phase("representation stats"):  # a host sync, but only every `monitor_every` steps
                host.update(representation_stats(self.teacher.backbone, globals_.flatten(0, 1)))
        return StepRecord(step, ["loss", *stats], values, host)

    def read_records(self, pending: list[StepRecord]) -> list[dict[str, float]]:
        """The pending steps' scalars in one host sync, checked: a non-finite loss stops the run
        (every rank alike). Called before each checkpoint, so a non-finite step is never saved."""
        if not pending:
            return []
        with self.phase("stats sync"):
            rows = torch.stack([p.values for p in pending]).tolist()
        records = []
        for p, row in zip(pending, rows, strict=True):
            record = dict(zip(p.names, row, strict=True))
            record.update(p.host)
            # Headline collapse numbers: the global branch if there is one (where collapse happens).
            branch = "global" if "global/kl" in record else "dense"
            record["teacher_entropy"], record["kl"] = record[f"{branch}/teacher_entropy"], record[f"{branch}/kl"]
            records.append(record)
        bad = next((p.step for p, r in zip(pending, records, strict=True) if not math.isfinite(r["loss"])), None)
        if broadcast_flag(bad is not None, self.ctx):
            record = records[[p.step for p in pending].index(bad)] if bad is not None else {}
            raise TrainingError(
                f"non-finite loss at step {bad} ({record}); stopping. The last good checkpoint "
                f"is {self.ckpt_path}" + (" (none written yet)" if not self.ckpt_path.exists() else "")
                + ". Try a lower lr, --amp off, or a larger teacher temperature."
            )
        return records

    def fit(self) -> Path:
        cfg, sch = self.cfg, self.schedules
        if self.step >= sch.total_steps:
            if self.ctx.is_main:
                log.info("%s already finished (%d steps); nothing to do", self.run_dir, self.step)
            return self.run_dir
        logger = None
        if self.ctx.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
            logger = RunLogger(self.run_dir, cfg.train.tensorboard)
            log.info(
                "training %s (%s, objective %s) on %s x%d: %d steps (%d per epoch), batch %d per process -> %s",
                cfg.model.arch, cfg.preset, cfg.objective, self.device, self.ctx.world_size,
                sch.total_steps, self.steps_per_epoch, cfg.optim.batch_size, self.run_dir,
            )
        bar = None
        if self.ctx.is_main and cfg.train.progress:
            from tqdm import tqdm

            bar = tqdm(total=sch.total_steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True)
        self.student.train()
        clips_per_step = cfg.optim.batch_size * self.ctx.world_size
        sync_every = self.sync_interval()
        pending: list[tuple[StepRecord, dict, dict]] = []  # (device scalars, timings, extras) per step

        def read_pending() -> None:
            records = self.read_records([p for p, _, _ in pending])
            for (p, timing, extras), record in zip(pending, records, strict=True):
                record.update(timing)
                record["collapsed"] = self.collapse.update(record, p.step + 1)
                record.update(extras)
                if logger is not None and (p.step + 1) % cfg.train.log_every == 0:
                    logger.write(record)
            if bar is not None and records:
                r = records[-1]
                bar.set_postfix(loss=f"{r['loss']:.3f}", lr=f"{r['lr']:.1e}", clips_s=f"{r['clips_per_s']:.1f}")
            pending.clear()

        step = self.step
        try:
            while step < sch.total_steps:
                epoch, done_in_epoch = divmod(step, self.steps_per_epoch)
                self.sampler.set_epoch(epoch)
                self.sampler.set_start(done_in_epoch * cfg.optim.batch_size)
                t_data = time.perf_counter()
                for batch in self.loader:
                    t_step = time.perf_counter()
                    lazy = self.step_lazily(batch, step)
                    step += 1
                    self.step = step
                    t_end = time.perf_counter()
                    # Without a sync per step these are host times: on CUDA, a step's time
                    # shows in the step that waits for it (the averages are right).
                    timing = {"step": step, "epoch": epoch, "clips_per_s": clips_per_step / max(t_end - t_data, 1e-9),
                              "data_time": t_step - t_data, "step_time": t_end - t_step}
                    extras = {}
                    if self.drift is not None and (step % cfg.adapt.drift_every == 0 or step == sch.total_steps):
                        extras.update(self.drift.measure(self.teacher.backbone))
                    if self.device.type == "cuda":
                        extras["peak_mem_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30
                    pending.append((lazy, timing, extras))
                    checkpoint_due = step % cfg.train.checkpoint_every == 0 and step < sch.total_steps
                    if len(pending) >= sync_every or checkpoint_due or step >= sch.total_steps:
                        read_pending()
                    if bar is not None:
                        bar.update(1)
                    if checkpoint_due:
                        self.save_checkpoint()
                    if step >= sch.total_steps:
                        break
                    t_data = time.perf_counter()
                read_pending()
                if step < sch.total_steps:  # a whole epoch ended
                    self.save_checkpoint()
            read_pending()
            self.save_checkpoint(finished=True)
        finally:
            if bar is not None:
                bar.close()
            if logger is not None:
                logger.close()
        if self.ctx.is_main:
            log.info("finished %d steps; teacher weights in %s", step, self.ckpt_path)
        return self.run_dir


def train(cfg: Config) -> Path:
    """Train (or resume) the run ``cfg.train.output`` (``build_config`` settles its default); returns
    the run folder. The folder is locked for the whole run (one process per run folder)."""
    if cfg.train.tensorboard:
        tensorboard_writer()
    ctx = setup_distributed(cfg.train.device)
    lock = RunLock(cfg.train.output)
    try:
        busy = None
        if ctx.is_main:  # rank 0 holds the lock for every rank of this run
            try:
                lock.acquire()
            except RunFolderBusy as e:
                busy = e
        if broadcast_flag(busy is not None, ctx):
            raise busy or RunFolderBusy(f"{cfg.train.output}: rank 0 could not lock the run folder")
        return _train_locked(cfg, ctx)
    finally:
        lock.release()
        cleanup_distributed()


def _train_locked(cfg: Config, ctx: DistributedContext) -> Path:
    # A sharp teacher (τ_T = 0.02) puts probabilities like exp(-100) into the softmax and its
    # backward: float32 denormals, which x86 CPUs compute ~10x slower (measured: 13 s vs 2 s per
    # cpu-tiny step). Flushing them to zero changes no result that matters. The flag is
    # process-wide, so it is put back (to torch's default, off) when training returns.
    flush = ctx.device.type == "cpu" and torch.set_flush_denormal(True)
    plan = CorePlan.for_run(cfg.data.num_workers)
    threads = torch.get_num_threads()
    plan.apply()
    if ctx.is_main:
        log.info("cpu: %s", plan.describe())
    try:
        return Trainer(cfg, ctx).fit()
    finally:
        torch.set_num_threads(threads)  # process-wide, like the flag: put back for the caller
        if flush:
            torch.set_flush_denormal(False)
