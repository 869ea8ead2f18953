"""Every per-step schedule of a run, in one place (DINO's ``cosine_scheduler`` and friends):
lr, weight decay, teacher momentum, teacher temperature and the frozen last layer."""

from __future__ import annotations

import math
from dataclasses import dataclass

from vidistill.config import Config


def cosine_schedule(
    base: float, final: float, total_steps: int, warmup_steps: int = 0, warmup_start: float = 0.0
) -> list[float]:
    """Linear warm-up ``warmup_start → base`` over ``warmup_steps``, then cosine ``base → final``."""
    total_steps = max(int(total_steps), 1)
    warmup_steps = min(max(int(warmup_steps), 0), total_steps)
    values = [warmup_start + (base - warmup_start) * i / warmup_steps for i in range(warmup_steps)]
    decay_steps = total_steps - warmup_steps
    for i in range(decay_steps):
        values.append(final + 0.5 * (base - final) * (1 + math.cos(math.pi * i / max(decay_steps, 1))))
    return values


def teacher_temperature(step: int, warmup_steps: int, warmup_temp: float, final_temp: float) -> float:
    """τ_T: linear warm-up ``warmup_temp → final_temp`` over ``warmup_steps``, then constant
    (DINO's "boost" recipe: a sharp teacher early, when outputs are still near-uniform)."""
    if step >= warmup_steps or warmup_steps <= 0:
        return final_temp
    return warmup_temp + (final_temp - warmup_temp) * step / warmup_steps


@dataclass(frozen=True)
class Schedules:
    """Values per optimiser step (index = step). Epoch counts in the config may be fractional:
    a short run (``train.max_steps``) warms up for part of an epoch."""

    lr: list[float]
    weight_decay: list[float]
    momentum: list[float]
    teacher_temp: list[float]
    freeze_last_layer_steps: int
    total_steps: int
    backbone_frozen_steps: int = 0  # head warm-up of an adapted init (adapt.head_warmup_fraction)

    def last_layer_frozen(self, step: int) -> bool:
        return step < self.freeze_last_layer_steps

    def backbone_frozen(self, step: int) -> bool:
        return step < self.backbone_frozen_steps

    def backbone_lr_factor(self, step: int) -> float:
        """0 while the backbone is frozen, then a linear ramp to 1 over as many steps (the
        backbone's own lr warm-up: it joins the heads gradually, not at the peak lr)."""
        w = self.backbone_frozen_steps
        return 1.0 if w == 0 else min(1.0, max(0.0, (step - w + 1) / w))

    @classmethod
    def build(cls, cfg: Config, steps_per_epoch: int, world_size: int) -> Schedules:
        o = cfg.optim
        total = cfg.train.max_steps or o.epochs * steps_per_epoch
        lr = o.base_lr * (o.batch_size * world_size / 256.0 if o.scale_lr else 1.0)

        def steps(epochs: float) -> int:
            return round(epochs * steps_per_epoch)

        temp_warmup = min(steps(o.warmup_teacher_temp_epochs), total)
        return cls(
            lr=cosine_schedule(lr, o.min_lr, total, steps(o.warmup_epochs)),
            weight_decay=cosine_schedule(o.weight_decay, o.weight_decay_end, total),
            momentum=cosine_schedule(o.momentum_teacher, 1.0, total),
            teacher_temp=[
                teacher_temperature(i, temp_warmup, o.warmup_teacher_temp, o.teacher_temp) for i in range(total)
            ],
            freeze_last_layer_steps=steps(o.freeze_last_layer_epochs),
            total_steps=total,
            backbone_frozen_steps=min(round(cfg.adapt.head_warmup_fraction * total), total),
        )
