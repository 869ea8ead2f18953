"""Where a training step's time goes, and the method's step against the official DINO step.

Three tables from one process run (a shared machine: only the ratios mean much):

1. **Breakdown** of ``vidistill train``'s own step (a real :class:`Trainer` on a generated AV1
   video, its real DataLoader): data wait, the move to the device, teacher forward, student
   backbone, predictor, heads, each loss, the stats sync, backward, clipping + optimiser, EMA,
   logging and the checkpoint (its write time spread over ``checkpoint_every`` steps). The
   forward parts are timed by module hooks inside the objective's forward; the rest by the
   trainer's own phase brackets (``Trainer.phase``). Median over the timed steps.
2. **Method vs DINO**: ``Trainer.train_step`` on a fixed batch against the body of
   facebookresearch/dino's ``train_one_epoch`` (``main_dino.py``: its ``MultiCropWrapper``,
   ``DINOHead``, ``DINOLoss``, ``get_params_groups``, ``clip_gradients``, its EMA loop; ``.cuda()``
   and ``torch.cuda.synchronize`` dropped on CPU), imported from a local checkout named on the
   command line (never vendored). Same timm backbone (``build_backbone``: ViT-Ti at cpu-tiny),
   same head sizes, 2 + (K-1)·L student views; timed alternately, median of each; the ratio.
3. **FLOPs** of one step of each (forward + backward, ``torch.utils.flop_counter`` as
   ``benchmarks/bench_flops.py`` counts them: matmuls, convolutions, attention): the ratio the
   method's extra work (predictor, dense head and loss) costs at the least.
4. With ``--ceiling``: the **compute ceiling** of the method step: its profiler self time split
   into matrix multiplies, fused attention and everything else, its GFLOP/s against this
   machine's fp32 GEMM rate, and the largest speed-up possible at the same FLOPs (if every
   non-GEMM kernel took no time; if every FLOP ran at the GEMM peak).

    git -C /work/.mirror/facebookresearch+dino/repo show HEAD:main_dino.py > /work/dino-official/main_dino.py
    (and vision_transformer.py, utils.py)
    python -m benchmarks.profile_step --dino /work/dino-official            # cpu-tiny, batch 8
    python -m benchmarks.profile_step --dino /work/dino-official --preset paper --device cuda
    python -m benchmarks.profile_step --ceiling --steps 3 --iters 5   # + what bounds a faster step
    python -m benchmarks.profile_step --preset paper --memory 1,2,4   # peak RSS per batch, 24 GiB estimate
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import math
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as dist

from benchmarks.common import interleaved
from vidistill.config import build_config
from vidistill.data.dataset import ClipBatch
from vidistill.model.backbone import build_backbone
from vidistill.train.distributed import DistributedContext
from vidistill.train.monitor import RunLogger
from vidistill.train.representation import representation_stats
from vidistill.train.trainer import Trainer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PhaseTimer:
    """Seconds per named phase of the current step (a device sync at each bracket on CUDA)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.current: dict[str, float] = defaultdict(float)
        self.steps: list[dict[str, float]] = []

    @contextlib.contextmanager
    def __call__(self, name: str):
        _sync(self.device)
        t = time.perf_counter()
        try:
            yield
        finally:
            _sync(self.device)
            self.current[name] += time.perf_counter() - t

    def add(self, name: str, seconds: float) -> None:
        self.current[name] += seconds

    def next_step(self) -> None:
        self.steps.append(dict(self.current))
        self.current = defaultdict(float)

    def median(self) -> dict[str, float]:
        names = list(dict.fromkeys(n for s in self.steps for n in s))
        return {n: statistics.median(s.get(n, 0.0) for s in self.steps) for n in names}


def hook_modules(timer: PhaseTimer, modules: dict[str, list[torch.nn.Module]]) -> list:
    """Time each module's forward (pre-hook to hook) into ``timer`` under its name; the modules
    of one name run one after another, never nested."""
    handles, started = [], {}
    for name, module in ((n, m) for n, ms in modules.items() for m in ms):
        def pre(_m, _args, name=name):
            _sync(timer.device)
            started[name] = time.perf_counter()

        def post(_m, _args, _out, name=name):
            _sync(timer.device)
            timer.add(name, time.perf_counter() - started.pop(name))

        handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    return handles


def write_source_video(folder: Path, frames: int) -> Path:
    import av  # noqa: PLC0415

    from benchmarks.bench_data import write_video

    av.logging.set_level(av.logging.ERROR)  # SVT-AV1 prints its configuration otherwise
    return write_video(folder / "scene.mp4", frames)  # AV1 g=2, what LeRobot writes


def build_trainer(preset: str, video: Path, output: Path, device: str, overrides: dict) -> Trainer:
    cfg = build_config(preset, overrides={
        "data.videos": [str(video)], "train.output": str(output), "train.device": device,
        "train.progress": False, "adapt.drift_every": 0, **overrides,
    })
    dev = torch.device("cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu")
    return Trainer(cfg, DistributedContext(device=dev))


def breakdown(trainer: Trainer, steps: int, warmup: int) -> dict[str, float]:
    """Median seconds per phase over ``steps`` steps of the real loop (after ``warmup``)."""
    dev, cfg = trainer.device, trainer.cfg
    timer = PhaseTimer(dev)
    s, obj = trainer.student, trainer.objective
    # forward_features is not a module call: its parts are (patch embedding, blocks, final norm).
    modules = {"teacher forward": [trainer.teacher],
               "student backbone": [s.backbone.patch_embed, s.backbone.blocks, s.backbone.norm],
               "student heads": [s.head]}
    if s.predictor is not None:
        modules["predictor"] = [s.predictor]
    for name in ("dense_loss", "global_loss", "loss"):
        if hasattr(obj, name):
            modules[name.replace("_", " ")] = [getattr(obj, name)]
    handles = hook_modules(timer, modules)
    trainer.phase = timer
    Path(cfg.train.output).mkdir(parents=True, exist_ok=True)
    logger = RunLogger(Path(cfg.train.output))
    try:
        it = iter(trainer.loader)
        for i in range(warmup + steps):
            t = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                trainer.sampler.set_epoch(i)
                it = iter(trainer.loader)
                batch = next(it)
            timer.add("data wait", time.perf_counter() - t)
            record = trainer.train_step(batch, min(i, trainer.schedules.total_steps - 1))
            with timer("logging"):
                record["collapsed"] = trainer.collapse.update(record, i + 1)
                logger.write({**record, "step": i + 1})
            if i < warmup:
                timer.current.clear()
            else:
                timer.next_step()
    finally:
        logger.close()
        for h in handles:
            h.remove()
        trainer.phase = lambda name: contextlib.nullcontext()
    out = timer.median()
    # The hooked forwards ran inside "forward + losses": what is left there is the objective's own glue.
    inside = sum(out.get(k, 0.0) for k in modules)
    out["objective glue (rest of forward)"] = max(out.pop("forward + losses") - inside, 0.0)
    out.pop("representation stats", None)  # a warm-up step's (step 0): counted below
    if cfg.train.monitor_every > 0:
        globals_ = trainer.model_input(batch)[0].flatten(0, 1)
        t = time.perf_counter()
        representation_stats(trainer.teacher.backbone, globals_)
        out["representation stats (/ monitor_every)"] = (time.perf_counter() - t) / cfg.train.monitor_every
    t = time.perf_counter()
    trainer.save_checkpoint()
    out["checkpoint (write / checkpoint_every)"] = (time.perf_counter() - t) / cfg.train.checkpoint_every
    return out


def load_official_dino(path: Path) -> SimpleNamespace:
    """facebookresearch/dino's modules from a local checkout (main_dino.py, utils.py, vision_transformer.py)."""
    missing = [f for f in ("main_dino.py", "utils.py", "vision_transformer.py") if not (path / f).is_file()]
    if missing:
        raise SystemExit(f"{path}: not a facebookresearch/dino checkout (missing {', '.join(missing)})")
    modules = {}
    for name in ("utils", "vision_transformer", "main_dino"):  # each imports the ones before it by name
        spec = importlib.util.spec_from_file_location(name, path / f"{name}.py")
        modules[name] = sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(modules[name])
    return SimpleNamespace(main=modules["main_dino"], utils=modules["utils"], vits=modules["vision_transformer"])


class OfficialDINOStep:
    """``main_dino.train_one_epoch``'s loop body on fixed crops, with the trainer's model sizes."""

    def __init__(self, dino: SimpleNamespace, cfg, batch_size: int, device: torch.device):
        m, d, o = cfg.model, cfg.data, cfg.optim
        self.dino, self.device, self.clip_grad = dino, device, o.clip_grad
        torch.manual_seed(0)

        def head(in_dim: int):
            return dino.vits.DINOHead(in_dim, m.out_dim, use_bn=False, norm_last_layer=m.norm_last_layer,
                                      nlayers=m.head_layers, hidden_dim=m.head_hidden_dim,
                                      bottleneck_dim=m.head_bottleneck_dim)

        student_bb = build_backbone(m.arch, d.global_size, drop_path=m.drop_path, model_args=m.model_args)
        teacher_bb = build_backbone(m.arch, d.global_size, model_args=m.model_args)
        dim = student_bb.embed_dim
        self.student = dino.utils.MultiCropWrapper(student_bb, head(dim)).to(device)
        self.teacher = dino.utils.MultiCropWrapper(teacher_bb, head(dim)).to(device)
        self.teacher.load_state_dict(self.student.state_dict())
        for p in self.teacher.parameters():
            p.requires_grad = False
        num_local = d.frame_dino_num_local
        self.loss = dino.main.DINOLoss(m.out_dim, num_local + 2, o.teacher_temp, o.teacher_temp, 0, 1,
                                       o.student_temp, o.center_momentum).to(device)
        self.optimizer = torch.optim.AdamW(dino.utils.get_params_groups(self.student))
        self.images = [torch.randn(batch_size, 3, d.global_size, d.global_size, device=device) for _ in range(2)]
        self.images += [torch.randn(batch_size, 3, d.local_size, d.local_size, device=device) for _ in range(num_local)]
        self.lr, self.wd, self.momentum = o.base_lr, o.weight_decay, o.momentum_teacher

    def step(self) -> float:
        utils = self.dino.utils
        for i, param_group in enumerate(self.optimizer.param_groups):
            param_group["lr"] = self.lr
            if i == 0:  # only the first group is regularized
                param_group["weight_decay"] = self.wd
        teacher_output = self.teacher(self.images[:2])
        student_output = self.student(self.images)
        loss = self.loss(student_output, teacher_output, 0)
        if not math.isfinite(loss.item()):
            raise RuntimeError(f"official DINO step: loss {loss.item()}")
        self.optimizer.zero_grad()
        loss.backward()
        if self.clip_grad:
            utils.clip_gradients(self.student, self.clip_grad)
        utils.cancel_gradients_last_layer(0, self.student, 0)
        self.optimizer.step()
        with torch.no_grad():
            m = self.momentum
            for param_q, param_k in zip(self.student.parameters(), self.teacher.parameters(), strict=True):
                param_k.data.mul_(m).add_((1 - m) * param_q.detach().data)
        _sync(self.device)
        return loss.item()


# The step index the fixed-batch timings use: step 0 measures the teacher's feature rank
# (representation stats, every train.monitor_every steps), which the breakdown counts on its
# own; the official DINO step has nothing like it.
PLAIN_STEP = 1


def fixed_batch(trainer: Trainer) -> ClipBatch:
    """One real batch from the trainer's loader, reused for every timed step."""
    return next(iter(trainer.loader))


def with_threads(fn, threads: int):
    """``fn`` run with ``threads`` intra-op threads (restored after)."""
    def run():
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return fn()
        finally:
            torch.set_num_threads(before)

    return run


def step_flops(fn) -> int:
    """Forward + backward FLOPs of one call, counted as ``bench_flops.counted_flops`` counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


GEMM_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def gemm_peak_gflops(sizes: tuple[int, ...] = (1024, 2048), rounds: int = 5) -> float:
    """This machine's fp32 matrix-multiply rate at the current thread count: the best of
    ``bench_flops``' square matmuls (its "matmul peak" row)."""
    from benchmarks.bench_flops import _best_side_by_side, _matmul_fn

    cpu = torch.device("cpu")
    best = _best_side_by_side({n: _matmul_fn(n, torch.float32, cpu) for n in sizes}, cpu, rounds)
    return max(2 * n**3 / sec for n, sec in best.items()) / 1e9


def compute_ceiling(fn, iters: int = 3) -> dict:
    """Where a step's time goes by kind of kernel (torch.profiler self time: matrix multiplies,
    fused attention, everything else), its FLOPs, and what bounds any speed-up at the same FLOPs:
    the step cannot be faster than its matrix multiplies alone, nor than its FLOPs at this
    machine's GEMM rate."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    flops = step_flops(fn)
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    step_s = (time.perf_counter() - t) / iters
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(iters):
            fn()
    self_us = {"gemm": 0.0, "attention": 0.0, "other": 0.0}
    for e in prof.key_averages():
        kind = ("gemm" if e.key in GEMM_OPS else
                "attention" if "scaled_dot_product" in e.key or "flash_attention" in e.key else "other")
        self_us[kind] += e.self_cpu_time_total
    total = sum(self_us.values())
    share = {k: v / total for k, v in self_us.items()}
    peak = gemm_peak_gflops()
    return {"step_s": step_s, "gflop": flops / 1e9, "gflops_achieved": flops / step_s / 1e9,
            "gemm_peak_gflops": peak, "share": share,
            "max_speedup_if_only_gemms_left": 1 / share["gemm"],
            "max_speedup_at_gemm_peak": step_s / (flops / 1e9 / peak)}


def init_single_process_group() -> None:
    """DINOLoss.update_center all-reduces: a one-process gloo group lets it run unmodified (the
    method's centre then all-reduces too, as in a torchrun job; both pay the same)."""
    if not dist.is_initialized():
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)


def run(dino_path: Path | None, preset: str = "cpu-tiny", batch_size: int | None = None, steps: int = 7,
        iters: int = 7, device: str = "cpu", video: Path | None = None, overrides: dict | None = None,
        thread_counts: list[int] | None = None, ceiling: bool = False) -> dict:
    torch.set_flush_denormal(True)  # as the trainer does on CPU
    result: dict = {"preset": preset, "load": _load()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video = video or write_source_video(tmp, 240)
        over = dict(overrides or {})
        if batch_size:
            over["optim.batch_size"] = batch_size
        trainer = build_trainer(preset, video, tmp / "run", device, over)
        cfg = trainer.cfg
        result.update(batch=cfg.optim.batch_size, threads=torch.get_num_threads(),
                      workers=trainer.loader.num_workers, out_dim=cfg.model.out_dim)
        result["breakdown"] = breakdown(trainer, steps, warmup=2)
        if dino_path is not None:
            init_single_process_group()
            official = OfficialDINOStep(load_official_dino(dino_path), cfg, cfg.optim.batch_size, trainer.device)
            batch = fixed_batch(trainer)
            method_step = lambda: trainer.train_step(batch, PLAIN_STEP)  # noqa: E731
            times = interleaved({"method": method_step, "dino": official.step}, iters)
            tm, td = statistics.median(times["method"]), statistics.median(times["dino"])
            fm, fd = step_flops(method_step), step_flops(official.step)
            result["vs_dino"] = {"method_s": tm, "dino_s": td, "ratio": tm / td,
                                 "method_gflop": fm / 1e9, "dino_gflop": fd / 1e9, "flop_ratio": fm / fd,
                                 "iters": iters}
        if thread_counts:
            batch = fixed_batch(trainer)
            times = interleaved({n: with_threads(lambda: trainer.train_step(batch, PLAIN_STEP), n) for n in thread_counts}, iters)
            result["threads_s"] = {n: statistics.median(t) for n, t in times.items()}
        if ceiling:
            batch = fixed_batch(trainer)
            result["ceiling"] = compute_ceiling(lambda: trainer.train_step(batch, PLAIN_STEP), iters)
        result["load_after"] = _load()
    return result


MEMORY_PROBE = """
import json, resource, sys, torch
from benchmarks.bench_train_step import StepUnderTest
from vidistill.config import build_config
torch.set_flush_denormal(True)
cfg = build_config(sys.argv[1], overrides={**json.loads(sys.argv[3]), "train.device": "cpu",
                                               "optim.batch_size": int(sys.argv[2])})
step = StepUnderTest(cfg, torch.device("cpu"), int(sys.argv[2]))
for _ in range(2):
    step.step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def peak_rss(preset: str, batches: list[int], limit_gib: float = 24.0, overrides: dict | None = None) -> dict:
    """Peak RSS of a process doing two method steps (synthetic views, CPU) at each batch, and the
    batch where the straight line through the two largest reaches ``limit_gib``."""
    import subprocess

    rss = {}
    for b in batches:
        r = subprocess.run([sys.executable, "-c", MEMORY_PROBE, preset, str(b), json.dumps(overrides or {})], capture_output=True, text=True,
                           cwd=Path(__file__).resolve().parent.parent)
        if r.returncode != 0:
            raise RuntimeError(f"memory probe at batch {b}: {r.stderr[-1500:]}")
        rss[b] = int(r.stdout.split()[-1]) / 2**30
    out: dict = {"preset": preset, "peak_rss_gib": rss, "limit_gib": limit_gib}
    if len(rss) >= 2:
        (b0, r0), (b1, r1) = sorted(rss.items())[-2:]
        if r1 > r0:
            out["gib_per_clip"] = (r1 - r0) / (b1 - b0)
            out["largest_batch_estimate"] = int(b1 + (limit_gib - r1) / out["gib_per_clip"])
    return out


def _load() -> str:
    try:
        return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()
    except OSError:
        return "?"


def format_result(r: dict) -> str:
    lines = [f"preset {r['preset']}, batch {r['batch']}, out_dim {r['out_dim']}, torch threads {r['threads']}, "
             f"workers {r['workers']}; load (1/5/15 min) {r['load']} -> {r['load_after']}", "",
             f"{'phase (median per step)':44s} {'ms':>9s} {'share':>6s}"]
    b = r["breakdown"]
    total = sum(b.values())
    for name, sec in b.items():
        lines.append(f"{name:44s} {sec * 1e3:9.1f} {sec / total:6.1%}")
    lines.append(f"{'total':44s} {total * 1e3:9.1f}")
    v = r.get("vs_dino")
    if v:
        lines += ["", f"{'step (alternated, median of ' + str(v['iters']) + ')':44s} {'ms':>9s} {'GFLOP':>9s}",
                  f"{'method (Trainer.train_step)':44s} {v['method_s'] * 1e3:9.1f} {v['method_gflop']:9.2f}",
                  f"{'official DINO (main_dino.train_one_epoch)':44s} {v['dino_s'] * 1e3:9.1f} {v['dino_gflop']:9.2f}",
                  f"{'ratio method/DINO: time, FLOPs':44s} {v['ratio']:9.2f} {v['flop_ratio']:9.2f}"]
    ts = r.get("threads_s")
    if ts:
        first = next(iter(ts.values()))
        lines += ["", f"{'method step by torch threads (alternated)':44s} {'ms':>9s} {'vs first':>9s}"]
        lines += [f"{str(n) + ' threads':44s} {sec * 1e3:9.1f} {sec / first:9.2f}" for n, sec in ts.items()]
    c = r.get("ceiling")
    if c:
        sh = c["share"]
        lines += ["", "compute ceiling of the method step (profiler self time by kernel kind)",
                  f"  step {c['step_s'] * 1e3:.0f} ms, {c['gflop']:.1f} GFLOP: {c['gflops_achieved']:.0f} GFLOP/s; "
                  f"this machine's fp32 GEMM: {c['gemm_peak_gflops']:.0f} GFLOP/s",
                  f"  matrix multiplies {sh['gemm']:.1%}, fused attention {sh['attention']:.1%}, "
                  f"everything else {sh['other']:.1%}",
                  f"  largest speed-up at the same FLOPs: {c['max_speedup_if_only_gemms_left']:.2f}x if every "
                  f"other kernel took no time; {c['max_speedup_at_gemm_peak']:.2f}x if all FLOPs ran at the GEMM peak"]
    return "\n".join(lines)


def main() -> None:
    from vidistill.config import parse_set

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dino", type=Path, help="folder with facebookresearch/dino's main_dino.py, utils.py, "
                   "vision_transformer.py (omit: breakdown only)")
    p.add_argument("--preset", default="cpu-tiny")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--steps", type=int, default=7, help="timed steps of the breakdown")
    p.add_argument("--iters", type=int, default=7, help="alternated steps of each for the ratio")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    p.add_argument("--video", type=Path, help="source video (default: a generated AV1 scene)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    p.add_argument("--threads", default="", metavar="N1,N2", help="also time the method step with each "
                   "intra-op thread count, alternated (e.g. 1,2)")
    p.add_argument("--ceiling", action="store_true", help="also: the step's time by kernel kind and the "
                   "largest speed-up its FLOPs allow on this machine")
    p.add_argument("--json", type=Path, help="also write the result here")
    p.add_argument("--memory", metavar="B1,B2,...", help="instead: peak RSS of a CPU step at these batches "
                   "(one process each) and the largest batch for 24 GiB")
    a = p.parse_args()
    if a.memory:
        m = peak_rss(a.preset, [int(x) for x in a.memory.split(",")], overrides=parse_set(a.set))
        print(json.dumps(m, indent=1))
        if a.json:
            a.json.write_text(json.dumps(m, indent=1))
        return
    r = run(a.dino, a.preset, a.batch_size, a.steps, a.iters, a.device, a.video, parse_set(a.set),
            [int(x) for x in a.threads.split(",") if x], a.ceiling)
    print(format_result(r))
    if a.json:
        a.json.write_text(json.dumps(r, indent=1))


if __name__ == "__main__":
    main()
