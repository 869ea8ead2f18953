"""One run on a lent GPU (H100/H200, PyTorch only, no internet): training and serving speed, one JSON.

Measures, each in its own try/except (a failure is recorded with its error and the next one runs),
under a global time guard (``--budget-s``, default 420 s: a measurement that would start too late
is recorded as skipped, one still running at the budget's end is cut off by an alarm and recorded
as an error; the JSON is rewritten after every measurement, so a killed run keeps what it had):

* ``train``: clips/s of the method's step and of the DINO step (vidistill's FrameDINO, same model,
  head and 2 + (K-1)·L student views) at the paper preset (ViT-S/16 224 px, batch 64, bf16
  autocast), eager and ``torch.compile``-d (compile time, recompiles after warm-up), alternated;
  peak allocated memory per step;
* ``max_batch``: peak memory at two batch sizes, extrapolated (linear in the batch) to the
  largest method batch fitting 80 GiB;
* ``sync``: a host sync after every method step vs one after 10 (``train.sync_every``);
* ``views``: the paper preset's views of a batch of 64 clips (640x480 frames) made by one CPU
  worker per clip (``data.views_on worker``) vs the worker's part with ``views_on device`` plus
  the GPU rendering the whole batch (``DeviceViews``);
* ``serving``: latency of ViT-S/16 at 224 px through the runtime's torch backend
  (``TorchEncoder``, bf16) at batch 1 and 32, eager and with CUDA graphs
  (``compile="reduce-overhead"``), device-resident input.

    python -m benchmarks.gpu_check --out $OUT/gpu_check.json         # on the GPU machine, <= 8 min
    python -m benchmarks.gpu_check --cpu-smoke --out /tmp/smoke.json  # every CPU-reachable path, seconds
"""

from __future__ import annotations

import argparse
import json
import platform
import signal
import statistics
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

# Tiny sizes for --cpu-smoke: the same code paths in seconds.
SMOKE_OVERRIDES = {"model.arch": "vit_tiny_patch16_224", "model.out_dim": 256, "model.head_hidden_dim": 64,
                   "model.head_bottleneck_dim": 32, "data.global_size": 32, "data.local_size": 16,
                   "data.num_local": 2, "model.model_args": {"depth": 2}}


class Guard:
    """The global time budget: ``left()`` seconds remain; ``allows(s)`` if ``s`` more fit."""

    def __init__(self, budget_s: float):
        self.start, self.budget_s = time.perf_counter(), budget_s

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.start)

    def allows(self, seconds: float) -> bool:
        return self.left() > seconds


class Report:
    """The JSON, rewritten after each measurement."""

    def __init__(self, path: Path | None, header: dict):
        self.path, self.data = path, {**header, "results": {}, "errors": {}, "skipped": {}}

    def record(self, name: str, fn: Callable[[], dict], guard: Guard, needs_s: float) -> None:
        if not guard.allows(needs_s):
            self.data["skipped"][name] = f"time guard: {guard.left():.0f} s left, needs ~{needs_s:.0f} s"
        else:
            t = time.perf_counter()
            hard_stop = _alarm(guard.left())  # a measurement running past the budget is cut off
            try:
                self.data["results"][name] = {**fn(), "wall_s": round(time.perf_counter() - t, 2)}
            except Exception as e:  # every measurement is optional: record why and go on
                self.data["errors"][name] = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=6)}"
            finally:
                hard_stop()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
        self.write()

    def write(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.data, indent=1, default=str))


def _alarm(seconds: float) -> Callable[[], None]:
    """Raise TimeoutError in this (main) thread after ``seconds``; returns the cancel."""
    if not hasattr(signal, "SIGALRM"):
        return lambda: None

    def stop(_sig, _frame):
        raise TimeoutError("cut off by the global time guard")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(max(1, int(seconds)))

    def cancel() -> None:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)

    return cancel


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _compile_count() -> int:
    """Graphs dynamo has compiled so far in this process (a recompile adds one)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def train_config(objective: str, smoke: bool, batch: int):
    from vidistill.config import build_config

    over = {"objective": objective, "optim.batch_size": batch, **(SMOKE_OVERRIDES if smoke else {})}
    over["train.device"] = "cpu" if smoke else "cuda"
    return build_config("paper", overrides=over)


def build_steps(batch: int, smoke: bool, compiled: bool) -> tuple[dict, dict]:
    """{"method": step, "dino": step} (bench_train_step.StepUnderTest) and their compile times."""
    from benchmarks.bench_train_step import StepUnderTest

    device = torch.device("cpu" if smoke else "cuda")
    steps, compile_s = {}, {}
    for name, objective in (("method", "dense+global"), ("dino", "dino")):
        step = StepUnderTest(train_config(objective, smoke, batch), device, batch)
        if compiled:
            step.student_fwd = torch.compile(step.student)
            t = time.perf_counter()
            step.step()  # the first call compiles
            _sync(device)
            compile_s[name] = time.perf_counter() - t
        steps[name] = step
    return steps, compile_s


def measure_train(batch: int, smoke: bool, compiled: bool, iters: int) -> dict:
    device = torch.device("cpu" if smoke else "cuda")
    steps, compile_s = build_steps(batch, smoke, compiled)
    for step in steps.values():  # warm-up: a recompile here is counted below
        for _ in range(2):
            step.step()
    _sync(device)
    graphs = _compile_count() if compiled else 0
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(iters):
        for name, step in steps.items():
            _sync(device)
            t = time.perf_counter()
            step.step()
            _sync(device)
            times[name].append(time.perf_counter() - t)
    out: dict = {"batch": batch, "compile": compiled, "iters": iters, "amp": str(steps["method"].amp)}
    for name, step in steps.items():
        sec = statistics.median(times[name])
        _reset_peak(device)
        step.step()
        _sync(device)
        out[name] = {"s_per_step": sec, "clips_per_s": batch / sec, "peak_gib": _peak_gib(device)}
        if compiled:
            out[name]["compile_s"] = compile_s[name]
    out["ratio_method_dino"] = out["method"]["s_per_step"] / out["dino"]["s_per_step"]
    if compiled:
        out["recompiles_after_warmup"] = _compile_count() - graphs
    return out


def measure_sync(batch: int, smoke: bool, steps: int, rounds: int) -> dict:
    """What a host sync per step costs (the trainer's ``train.sync_every``): ``steps`` method
    steps with a sync after each vs one sync after all of them, alternated over ``rounds``."""
    device = torch.device("cpu" if smoke else "cuda")
    step = build_steps(batch, smoke, compiled=False)[0]["method"]
    step.step()
    _sync(device)

    def every_step():
        for _ in range(steps):
            step.step()
            _sync(device)

    def at_end():
        for _ in range(steps):
            step.step()
        _sync(device)

    times: dict[str, list[float]] = {"every step": [], "at end": []}
    for _ in range(rounds):
        for name, fn in (("every step", every_step), ("at end", at_end)):
            t = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t) / steps)
    a, b = statistics.median(times["every step"]), statistics.median(times["at end"])
    return {"batch": batch, "steps": steps, "s_per_step_sync_every_step": a, "s_per_step_sync_at_end": b,
            "ratio": a / b}


def measure_views(batch: int, smoke: bool, rounds: int) -> dict:
    """Views per batch: the worker path on one CPU thread vs the worker's part with views on the
    device plus the batch rendered there (data.views_on), at the paper preset's sizes."""
    import numpy as np

    from benchmarks.bench_data import scene
    from vidistill.data.device_views import DeviceViews, collate_raw_clips, raw_clip
    from vidistill.data.views import build_views

    device = torch.device("cpu" if smoke else "cuda")
    cfg = train_config("dense+global", smoke, batch)
    frames = list(scene(61, (160, 120) if smoke else (640, 480)))[::30]
    views, render = build_views(cfg), DeviceViews(cfg.data, device)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a DataLoader worker's share
    try:
        times: dict[str, list[float]] = {"worker views": [], "worker part (views on device)": [], "device render": []}
        for r in range(rounds + 1):
            rngs = [np.random.default_rng((r, i)) for i in range(batch)]
            t = time.perf_counter()
            for rng in rngs:
                views(frames, rng)
            t1 = time.perf_counter()
            raw = collate_raw_clips([(raw_clip(views, frames, rng), i) for i, rng in enumerate(rngs)])
            t2 = time.perf_counter()
            render(raw)
            _sync(device)
            t3 = time.perf_counter()
            if r:  # the first round warms up
                for name, sec in zip(times, (t1 - t, t2 - t1, t3 - t2), strict=True):
                    times[name].append(sec)
    finally:
        torch.set_num_threads(threads)
    out = {name: {"ms_per_batch": statistics.median(v) * 1e3, "ms_per_clip": statistics.median(v) * 1e3 / batch}
           for name, v in times.items()}
    out["batch"] = batch
    out["worker_ratio"] = out["worker views"]["ms_per_batch"] / out["worker part (views on device)"]["ms_per_batch"]
    return out


def measure_max_batch(batches: tuple[int, int], smoke: bool, limit_gib: float = 80.0) -> dict:
    """Peak memory of the method's step at two batches; the batch where the line reaches ``limit_gib``."""
    device = torch.device("cpu" if smoke else "cuda")
    peaks = {}
    for b in batches:
        steps, _ = build_steps(b, smoke, compiled=False)
        step = steps["method"]
        del steps
        step.step()
        _sync(device)
        _reset_peak(device)
        step.step()
        _sync(device)
        peaks[b] = _peak_gib(device)
        del step
        if device.type == "cuda":
            torch.cuda.empty_cache()
    out: dict = {"peak_gib_by_batch": peaks, "limit_gib": limit_gib}
    (b0, p0), (b1, p1) = peaks.items()
    if p0 is not None and p1 is not None and p1 > p0:
        per_clip = (p1 - p0) / (b1 - b0)
        out["gib_per_clip"] = per_clip
        out["largest_batch_estimate"] = int(b1 + (limit_gib - p1) / per_clip)
    return out


def measure_serving(smoke: bool, batches: tuple[int, ...], rounds: int) -> dict:
    """ViT-S/16 at 224 px (tiny at 32 px in the smoke) through TorchEncoder, eager and CUDA graphs."""
    import timm

    from vidistill.runtime.backends.torch import TorchEncoder
    from vidistill.runtime.timm_vit import contract_of
    from vidistill.runtime.torch_model import rebuild_at_size

    arch, size = ("vit_tiny_patch16_224", 32) if smoke else ("vit_small_patch16_224", 224)
    device = "cpu" if smoke else "cuda"
    torch.manual_seed(0)
    model_args = {"depth": 2} if smoke else {}
    model = timm.create_model(arch, pretrained=False, num_classes=0, img_size=size, dynamic_img_size=True,
                              **model_args).eval()
    contract = contract_of(model, arch, size, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), model_args)
    modes = {"bf16 eager": None} if smoke else {"bf16 eager": None, "bf16 cuda graphs": "reduce-overhead"}
    out: dict = {"arch": arch, "image_size": size}
    for label, mode in modes.items():
        encoder_module, c = rebuild_at_size(model.state_dict(), contract)
        enc = TorchEncoder(encoder_module, c, device, precision="bf16", compile=mode)
        for batch in batches:
            x = torch.randn(batch, 3, size, size, device=device)
            t = time.perf_counter()
            for _ in range(3):  # warm-up (and CUDA-graph capture)
                enc._run_tensor(x)
            _sync(torch.device(device))
            warm = time.perf_counter() - t
            lat = []
            for _ in range(rounds):
                t = time.perf_counter()
                enc._run_tensor(x)
                _sync(torch.device(device))
                lat.append(time.perf_counter() - t)
            ms = statistics.median(lat) * 1e3
            out[f"{label} batch {batch}"] = {"latency_ms": ms, "images_per_s": batch / ms * 1e3, "warmup_s": warm}
    return out


def run(out: Path | None, smoke: bool = False, budget_s: float = 420.0) -> dict:
    guard = Guard(budget_s)
    if not smoke and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --cpu-smoke to check the script on CPU")
    header = {"torch": torch.__version__, "python": platform.python_version(), "smoke": smoke,
              "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() and not smoke else "cpu",
              "budget_s": budget_s}
    if not smoke:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    report = Report(out, header)
    batch = 2 if smoke else 64
    iters = 2 if smoke else 10
    # (name, fn, seconds left needed to start it: a guess, the alarm cuts off what overruns)
    plan = [
        ("train eager", lambda: measure_train(batch, smoke, False, iters), 60),
        ("serving", lambda: measure_serving(smoke, (1, 32) if not smoke else (1, 2), 5 if smoke else 50), 60),
        ("views", lambda: measure_views(batch, smoke, 1 if smoke else 3), 30),
        ("sync", lambda: measure_sync(batch, smoke, 2 if smoke else 10, 1 if smoke else 3), 40),
        ("max_batch", lambda: measure_max_batch((2, 4) if smoke else (32, 64), smoke), 40),
    ]
    if not smoke:  # compile on CPU takes minutes on a small machine: GPU only; last, as the longest
        plan.append(("train compiled", lambda: measure_train(batch, smoke, True, iters), 120))
    for name, fn, needs in plan:
        report.record(name, fn, guard, needs if not smoke else 1)
    report.data["total_s"] = round(time.perf_counter() - guard.start, 1)
    report.write()
    return report.data


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    p.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on CPU: check the script itself")
    p.add_argument("--budget-s", type=float, default=420.0, help="global time guard (seconds)")
    a = p.parse_args()
    data = run(a.out, a.cpu_smoke, a.budget_s)
    print(json.dumps({k: v for k, v in data.items() if k != "errors"}, indent=1, default=str))
    for name, err in data["errors"].items():
        print(f"ERROR {name}: {err.splitlines()[0]}")


if __name__ == "__main__":
    main()
