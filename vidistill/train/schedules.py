"""Per-step schedules (DINO's ``cosine_scheduler``): lr, weight decay, teacher momentum."""

from __future__ import annotations

import math


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
