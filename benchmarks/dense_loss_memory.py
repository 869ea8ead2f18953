"""Peak memory (and time) of the dense loss's forward + backward: the chunked soft cross-entropy
(``objective.cross_entropy.chunked_distillation``, what ``DenseNextFrameLoss`` uses) against the
whole-tensor expression it replaced (``teacher_probs`` → ``soft_cross_entropy`` →
``distillation_stats`` on all [B·(K−1)·P, out_dim] rows at once), at a preset's dense shapes on CPU.

Memory: one fresh process per (path, batch): peak RSS (``ru_maxrss``) during one forward +
backward minus the RSS with the inputs (student logits with their gradient, teacher outputs)
already allocated, so the figure is what the loss itself adds. Time: both paths alternated in
one process (median), as a ratio. Denormals are flushed, as ``vidistill train`` does on CPU.

    python -m benchmarks.dense_loss_memory --preset paper --batch 2,4 --time-batch 2
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from vidistill.config import build_config
from vidistill.objective.cross_entropy import (
    chunked_distillation,
    distillation_stats,
    soft_cross_entropy,
    teacher_probs,
)

PATHS = ("whole", "chunked")
TEACHER_TEMP, STUDENT_TEMP = 0.04, 0.1


def dense_shape(preset: str, batch: int) -> tuple[int, int, int, int]:
    """(B, K−1, P, out_dim) of the dense loss at ``preset`` (patch 16)."""
    cfg = build_config(preset)
    patches = (cfg.data.global_size // 16) ** 2
    return batch, cfg.data.num_frames - 1, patches, cfg.model.out_dim


def inputs(shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    student = torch.randn(shape, generator=g).mul_(3).requires_grad_()
    teacher = torch.randn(shape, generator=g).mul_(3)
    return student, teacher, torch.zeros(1, shape[-1])


def loss_step(path: str, student: torch.Tensor, teacher: torch.Tensor, centre: torch.Tensor) -> float:
    """One forward + backward of the dense loss by ``path``; the loss."""
    if path == "whole":
        p_t = teacher_probs(teacher, centre, TEACHER_TEMP)
        loss = soft_cross_entropy(p_t, student, STUDENT_TEMP).mean()
        distillation_stats(loss, p_t)
    else:
        loss, _ = chunked_distillation(student, teacher, centre, TEACHER_TEMP, STUDENT_TEMP)
    loss.backward()
    return loss.item()


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def child(path: str, shape: tuple[int, ...]) -> dict:
    student, teacher, centre = inputs(shape)
    student.grad = torch.zeros_like(student)  # the gradient both paths end with, allocated up front
    base = _rss_gib()
    loss_step(path, student, teacher, centre)
    return {"path": path, "shape": list(shape), "base_gib": base, "peak_gib": _rss_gib(),
            "added_gib": _rss_gib() - base}


def measure_memory(preset: str, batch: int, path: str) -> dict:
    shape = dense_shape(preset, batch)
    cmd = [sys.executable, "-m", "benchmarks.dense_loss_memory", "--child", path, "--shape", ",".join(map(str, shape))]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent.parent)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_time(preset: str, batch: int, iters: int) -> dict[str, float]:
    student, teacher, centre = inputs(dense_shape(preset, batch))
    times: dict[str, list[float]] = {p: [] for p in PATHS}
    for i in range(iters + 1):
        for path in PATHS:
            student.grad = None
            t = time.perf_counter()
            loss_step(path, student, teacher, centre)
            if i:  # the first round warms up
                times[path].append(time.perf_counter() - t)
    return {p: statistics.median(v) for p, v in times.items()}


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="paper")
    p.add_argument("--batch", default="2,4", help="batches to measure peak memory at (one process each)")
    p.add_argument("--time-batch", type=int, default=2, help="batch of the alternated timing (0: none)")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--child", choices=PATHS, help=argparse.SUPPRESS)
    p.add_argument("--shape", help=argparse.SUPPRESS)
    a = p.parse_args()
    torch.set_flush_denormal(True)  # as training on CPU does (vidistill.train.trainer._train_locked)
    if a.child:
        print(json.dumps(child(a.child, tuple(int(x) for x in a.shape.split(",")))))  # noqa: T201
        return
    before = _load()
    print(f"dense loss forward + backward at {a.preset}'s shapes (B, K-1, P, out_dim), CPU")  # noqa: T201
    print(f"{'batch':>5s} {'rows':>7s} {'whole GiB':>10s} {'chunked GiB':>12s} {'ratio':>6s}   (peak RSS added by the loss)")  # noqa: T201
    for batch in (int(x) for x in a.batch.split(",") if x):
        r = {path: measure_memory(a.preset, batch, path) for path in PATHS}
        b, k, n, _ = r["whole"]["shape"]
        w, c = r["whole"]["added_gib"], r["chunked"]["added_gib"]
        print(f"{batch:5d} {b * k * n:7d} {w:10.2f} {c:12.2f} {c / w:6.2f}")  # noqa: T201
    if a.time_batch:
        t = measure_time(a.preset, a.time_batch, a.iters)
        print(f"time at batch {a.time_batch} (alternated, median of {a.iters}): whole {t['whole'] * 1e3:.0f} ms, "  # noqa: T201
              f"chunked {t['chunked'] * 1e3:.0f} ms, ratio {t['chunked'] / t['whole']:.2f}")
    print(f"load (1/5/15 min) {before} -> {_load()}, torch threads {torch.get_num_threads()}")  # noqa: T201


if __name__ == "__main__":
    main()
