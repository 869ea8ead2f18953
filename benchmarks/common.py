"""What the benchmarks share: statistics over seeds, tables, how far a backbone moved from its
start, and the toy image env that the adapter benchmark and the adapter tests step.

The benchmarks are one package: run each as a module from the repository root
(``python -m benchmarks.adapt.run ...``), so they import each other without path edits.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

# Two-sided 95% Student-t quantiles by degrees of freedom (1.96 beyond).
T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26}


# ---- statistics ------------------------------------------------------------------------------
def stats(values: Iterable[Any]) -> dict:
    """Mean and sample std of the finite numbers among ``values`` (None where too few)."""
    vals = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return {"mean": statistics.fmean(vals) if vals else None,
            "std": statistics.stdev(vals) if len(vals) > 1 else None, "values": vals}


def mean_ci(values: Sequence[float]) -> dict:
    """Mean and the half-width of its 95% t interval."""
    n = len(values)
    if n == 0:
        return {"mean": None, "ci95": None, "n": 0}
    ci = T95.get(n - 1, 1.96) * statistics.stdev(values) / math.sqrt(n) if n > 1 else None
    return {"mean": statistics.fmean(values), "ci95": ci, "n": n, "values": list(values)}


def interleaved(fns: dict[str, Callable[[], object]], rounds: int, warmup: int = 2) -> dict[str, list[float]]:
    """Seconds per call of each fn, one sample per round; each round calls every fn once, in turn,
    so a burst of background load hits all of them alike (compare them round by round)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t)
    return samples


def paired_ratio(num: Sequence[float], den: Sequence[float], scale: float = 1.0) -> float:
    """Median over rounds of num/den (paired samples cancel the load drift between rounds)."""
    return statistics.median(n / (d * scale) for n, d in zip(num, den, strict=True))


# ---- tables ----------------------------------------------------------------------------------
def mean_std_cell(m: dict, fmt: str = "{:.1f}", signed: bool = False) -> str:
    """``mean ± std`` of a :func:`stats` dict (``–`` without values, the mean alone for one)."""
    if m["mean"] is None:
        return "–"
    f = fmt.replace("{:", "{:+") if signed else fmt
    return f.format(m["mean"]) if m["std"] is None else f"{f.format(m['mean'])} ± {fmt.format(m['std'])}"


def render_table(head: Sequence[str], rows: Sequence[Sequence[Any]], markdown: bool = False) -> str:
    """A Markdown table, or plain text in aligned columns under a dashed rule."""
    cells = [[str(c) for c in head], *([str(c) for c in row] for row in rows)]
    if markdown:
        return "\n".join("| " + " | ".join(r) + " |" for r in [cells[0], ["---"] * len(head), *cells[1:]])
    widths = [max(len(c) for c in col) for col in zip(*cells, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


# ---- how far training moved a backbone -------------------------------------------------------
def weight_drift(checkpoint: Path, reference: dict) -> dict:
    """||w - w0|| / ||w0|| over the backbone, per branch (teacher, student) of a vidistill
    checkpoint; ``reference``: the starting backbone's weights by timm name. A slow EMA teacher
    stays close to its start, which mutes every difference from it: this says by how much."""
    from vidistill.runtime.checkpoints import load_checkpoint

    state = load_checkpoint(checkpoint)
    out = {}
    for branch in ("teacher", "student"):
        num = den = 0.0
        for key, w0 in reference.items():
            w = state[branch].get(f"backbone.{key}")
            if w is not None and w.shape == w0.shape and w0.is_floating_point():
                num += float((w.float() - w0.float()).pow(2).sum())
                den += float(w0.float().pow(2).sum())
        out[branch] = math.sqrt(num / den) if den else None
    return out


# ---- command lines ---------------------------------------------------------------------------
def fill_sizes(args: Any, sizes: dict) -> None:
    """The sizes the user did not give (None in ``args``), from ``sizes`` (e.g. the ``--quick`` set)."""
    for key, default in sizes.items():
        if getattr(args, key, None) is None:
            setattr(args, key, default)


# ---- a toy image env -------------------------------------------------------------------------
def square_frame(side: int, rng: np.random.Generator, size: int = 96) -> np.ndarray:
    """A dark frame with a bright square in the left (0) or right (1) half, jittered."""
    img = np.full((size, size, 3), 20, dtype=np.uint8)
    s = size // 4
    x0 = int(rng.integers(0, size // 2 - s)) + side * (size // 2)
    y0 = int(rng.integers(0, size - s))
    img[y0 : y0 + s, x0 : x0 + s] = (230, 200, 40)
    return img


class SquareEnv(gym.Env):
    """Box image observation; reward 1 when the action names the square's side. Random policy: 0.5."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, size: int = 96, episode_len: int = 8, render_mode: str | None = None):
        self.size, self.episode_len, self.render_mode = size, episode_len, render_mode
        self.observation_space = spaces.Box(0, 255, (size, size, 3), dtype=np.uint8)
        self.action_space = spaces.Discrete(2)
        self._frame = np.zeros((size, size, 3), np.uint8)

    def _new_frame(self) -> np.ndarray:
        self._side = int(self.np_random.integers(2))
        self._frame = square_frame(self._side, self.np_random, self.size)
        return self._frame.copy()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self._new_frame(), {}

    def step(self, action):
        reward = float(int(action) == self._side)
        self._t += 1
        return self._new_frame(), reward, self._t >= self.episode_len, False, {}

    def render(self):
        return self._frame.copy() if self.render_mode == "rgb_array" else None
