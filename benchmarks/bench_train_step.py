"""One clip step of the method vs a plain DINO step, same model and same number of views.

Prints a table: step time of each (timed side by side, alternating, in one run), their ratio
(goal <= 1.3x), the split of the method's step (backbone, predictor, dense head + loss), peak
memory on CUDA, and an out_dim sweep for the dense head.

    python -m benchmarks.bench_train_step                 # CPU: cpu-tiny preset
    python -m benchmarks.bench_train_step --preset gpu --batch-size 64 --out-dims 4096,16384,65536
    python -m benchmarks.bench_train_step --device cpu --amp-compare     # autocast off vs bf16
    python -m benchmarks.bench_train_step --device cpu --compile-compare # eager vs torch.compile
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vidistill.config import build_config
from vidistill.model import Student, Teacher, split_tokens, update_teacher
from vidistill.objective import build_objective
from vidistill.train.optimizer import build_optimizer, clip_gradients_per_parameter
from vidistill.train.trainer import autocast_dtype


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class StepUnderTest:
    """Student, teacher, objective and optimiser for one objective, on synthetic views."""

    def __init__(self, cfg, device, batch_size: int):
        torch.manual_seed(0)
        self.device, self.cfg = device, cfg
        self.student = Student(cfg).to(device)
        self.teacher = Teacher(self.student).to(device)
        self.objective = build_objective(cfg).to(device)
        self.optimizer = build_optimizer(self.student)
        d = cfg.data
        k = 2 if cfg.objective.is_frame_dino else d.num_frames
        # Same student views for both (as the trainer's views): the method's K-1 globals +
        # (K-1)·L locals; DINO's 2 globals + (K-1)·L locals of its image.
        locals_per_group = d.frame_dino_num_local if cfg.objective.is_frame_dino else d.num_local
        self.globals = torch.randn(batch_size, k, 3, d.global_size, d.global_size, device=device)
        self.locals = torch.randn(batch_size, k - 1, locals_per_group, 3, d.local_size, d.local_size, device=device)
        self.amp = autocast_dtype(cfg.train.amp, device)
        self.student_fwd = self.student  # or torch.compile(self.student), as the trainer's --compile

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None)

    def step(self) -> None:
        with self.autocast():
            loss, _ = self.objective(self.student_fwd, self.teacher, self.globals, self.locals, 0.04)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients_per_parameter(self.student, 3.0)
        self.optimizer.step()
        update_teacher(self.student, self.teacher, 0.996)


def time_fn(fn, device, iters: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    _sync(device)
    out = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - t)
    return out


def part_timings(step: StepUnderTest, iters: int) -> dict[str, float]:
    """Forward+backward of each part of the method's student on the step's own shapes."""
    s, dev = step.student, step.device
    g = step.globals[:, :-1].flatten(0, 1)
    with torch.no_grad(), step.autocast():
        _, patches = split_tokens(s.backbone, s.backbone.forward_features(g))
        predicted = s.predictor(patches)
    patches, predicted = patches.float(), predicted.float()

    def backbone():
        with step.autocast():
            out = s.backbone.forward_features(g).float().sum() + s.backbone.forward_features(step.locals.flatten(0, 2)).float().sum()
        out.backward()

    def predictor():
        with step.autocast():
            out = s.predictor(patches.requires_grad_()).float().sum()
        out.backward()

    def dense_head():
        with step.autocast():
            logits = s.head(predicted.requires_grad_())
        loss = -(torch.log_softmax(logits.float() / 0.1, -1)).mean()
        loss.backward()

    return {name: statistics.median(time_fn(fn, dev, iters)) for name, fn in
            (("backbone", backbone), ("predictor", predictor), ("dense_head", dense_head))}


def peak_memory(fn, device) -> float:
    if device.type != "cuda":
        return float("nan")
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated(device) / 2**30


def run(quick: bool = True, preset: str = "cpu-tiny", batch_size: int | None = None,
        out_dims: list[int] | None = None, device: str = "auto", iters: int | None = None) -> list[dict]:
    dev = torch.device("cuda" if (device == "auto" and torch.cuda.is_available()) else ("cpu" if device == "auto" else device))
    torch.set_flush_denormal(True)  # as the trainer does on CPU (see vidistill/train/trainer.py)
    base = build_config(preset, overrides={"train.device": dev.type})
    bs = batch_size or (4 if quick and dev.type == "cpu" else base.optim.batch_size)
    iters = iters or (3 if quick else 10)
    rows: list[dict] = []
    method = StepUnderTest(base, dev, bs)
    # DINO with the same number of student views: 2 globals + (K-1)·L locals.
    d = base.data
    dino_cfg = build_config(preset, overrides={"objective": "dino", "train.device": dev.type})
    dino = StepUnderTest(dino_cfg, dev, bs)
    for s in (method, dino):
        time_fn(s.step, dev, 1)
    t_method, t_dino = [], []
    for _ in range(iters):  # alternate so drift hits both alike
        t_method += time_fn(method.step, dev, 1, warmup=0)
        t_dino += time_fn(dino.step, dev, 1, warmup=0)
    tm, td = statistics.median(t_method), statistics.median(t_dino)
    rows.append({"bench": "train_step", "what": f"method step (K={d.num_frames}, L={d.num_local})", "device": dev.type,
                 "batch": bs, "seconds": tm, "clips_per_s": bs / tm, "peak_gib": peak_memory(method.step, dev)})
    rows.append({"bench": "train_step", "what": "DINO step (same views)", "device": dev.type, "batch": bs,
                 "seconds": td, "clips_per_s": bs / td, "peak_gib": peak_memory(dino.step, dev)})
    rows.append({"bench": "train_step", "what": "ratio method/DINO (goal <= 1.3)", "ratio": tm / td})
    for part, sec in part_timings(method, iters).items():
        rows.append({"bench": "train_step", "what": f"part: {part} fwd+bwd", "seconds": sec, "ratio": sec / tm})
    del method, dino
    for od in out_dims or []:
        cfg = build_config(preset, overrides={"model.out_dim": od, "train.device": dev.type})
        s = StepUnderTest(cfg, dev, bs)
        sec = statistics.median(time_fn(s.step, dev, iters))
        rows.append({"bench": "train_step", "what": f"method step out_dim={od}", "batch": bs, "seconds": sec,
                     "clips_per_s": bs / sec, "peak_gib": peak_memory(s.step, dev)})
        del s
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def alternated_rows(steps: dict[str, StepUnderTest], dev: torch.device, iters: int, label: str) -> list[dict]:
    """Time warmed-up steps side by side (one of each per round, so drift hits all alike): a row
    each, its ratio to the first."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(iters):
        for name, s in steps.items():
            times[name] += time_fn(s.step, dev, 1, warmup=0)
    first = statistics.median(next(iter(times.values())))
    bs = next(iter(steps.values())).globals.shape[0]
    return [{"what": f"method step, {label}{name}", "batch": bs, "seconds": statistics.median(t),
             "clips_per_s": bs / statistics.median(t), "ratio": statistics.median(t) / first} for name, t in times.items()]


def amp_rows(preset: str = "cpu-tiny", batch_size: int | None = None, device: str = "cpu", iters: int = 5) -> list[dict]:
    """The method step with autocast off vs bf16, alternated: whether bf16 pays on this device
    (on CPU only with AVX-512-bf16 / AMX matrix units)."""
    dev = torch.device(device)
    torch.set_flush_denormal(dev.type == "cpu")
    steps = {}
    for amp in ("off", "bf16"):
        cfg = build_config(preset, overrides={"train.device": dev.type, "train.amp": amp})
        steps[amp] = StepUnderTest(cfg, dev, batch_size or cfg.optim.batch_size)
        time_fn(steps[amp].step, dev, 1)
    return alternated_rows(steps, dev, iters, "autocast ")


def compile_rows(preset: str = "cpu-tiny", batch_size: int | None = None, device: str = "cpu",
                 iters: int = 5) -> list[dict]:
    """The method step eager vs with the student ``torch.compile``d (the trainer's ``--compile``),
    alternated after warm-up: the compile time (the first steps, as a run pays it) and whether
    the timed steps recompiled (dynamo's unique-graph count moving)."""
    from torch._dynamo.utils import counters

    dev = torch.device(device)
    torch.set_flush_denormal(dev.type == "cpu")
    cfg = build_config(preset, overrides={"train.device": dev.type})
    steps = {"eager": StepUnderTest(cfg, dev, batch_size or cfg.optim.batch_size),
             "compiled": StepUnderTest(cfg, dev, batch_size or cfg.optim.batch_size)}
    steps["compiled"].student_fwd = torch.compile(steps["compiled"].student)
    warm = {}
    for name, s in steps.items():
        t = time.perf_counter()
        time_fn(s.step, dev, 2, warmup=0)
        warm[name] = time.perf_counter() - t
    graphs = counters["stats"]["unique_graphs"]
    rows = alternated_rows(steps, dev, iters, "")
    recompiles = counters["stats"]["unique_graphs"] - graphs
    rows.append({"what": "compile: first 2 steps (s), graphs made after warm-up", "seconds": warm["compiled"],
                 "ratio": float(recompiles)})
    return rows


def format_rows(rows: list[dict]) -> str:
    def f(r, key, fmt):
        v = r.get(key)
        return format(v, fmt) if isinstance(v, (int, float)) and v == v else "-"

    lines = [f"{'what':48s} {'batch':>5s} {'s/step':>9s} {'clips/s':>8s} {'peak GiB':>8s} {'ratio':>6s}"]
    for r in rows:
        lines.append(f"{r['what']:48s} {f(r, 'batch', '5d'):>5s} {f(r, 'seconds', '9.4f'):>9s} "
                     f"{f(r, 'clips_per_s', '8.1f'):>8s} {f(r, 'peak_gib', '8.2f'):>8s} {f(r, 'ratio', '6.2f'):>6s}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu-tiny")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--out-dims", default="", help="comma-separated out_dim sweep, e.g. 4096,16384,65536")
    p.add_argument("--device", default="auto")
    p.add_argument("--iters", type=int)
    p.add_argument("--full", action="store_true")
    p.add_argument("--amp-compare", action="store_true", help="instead: the method step with autocast off vs bf16")
    p.add_argument("--compile-compare", action="store_true", help="instead: the method step eager vs torch.compile")
    a = p.parse_args()
    if a.compile_compare:
        dev = "cuda" if a.device == "auto" and torch.cuda.is_available() else ("cpu" if a.device == "auto" else a.device)
        print(format_rows(compile_rows(a.preset, a.batch_size, dev, a.iters or 5)))
        return
    if a.amp_compare:
        dev = "cuda" if a.device == "auto" and torch.cuda.is_available() else ("cpu" if a.device == "auto" else a.device)
        print(format_rows(amp_rows(a.preset, a.batch_size, dev, a.iters or 5)))
        print(f"cpu: avx512-bf16 {torch.cpu._is_avx512_bf16_supported()}, amx {torch.cpu._is_amx_tile_supported()}")
        return
    dims = [int(x) for x in a.out_dims.split(",") if x]
    print(format_rows(run(not a.full, a.preset, a.batch_size, dims, a.device, a.iters)))


if __name__ == "__main__":
    main()
