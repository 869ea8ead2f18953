"""One benchmark suite, one command: every ``benchmarks/bench_*.py`` in one run, one table.

    python -m benchmarks                      # quick: fits 2 CPU cores (< 15 min)
    python -m benchmarks --full               # GPU sizes (gpu preset, more rounds, TensorRT)
    python -m benchmarks --only training flops --markdown
    python -m benchmarks --output /tmp/bench.json

Every ratio in the table is measured side by side in the same run (each sub-benchmark alternates
the things it compares, so background load hits both alike) and carries its goal and PASS/MISS;
rows without a goal are context (absolute times, splits, FLOP rates). The raw rows, the table,
versions and the machine go to ``benchmarks/results/<machine>.json`` (``<machine>-full.json``
for ``--full``) so runs can be compared.

A sub-benchmark that cannot be imported or fails is reported on its own line (SKIPPED / FAILED)
and the rest of the suite still runs.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


# ----------------------------------------------------------------------------------------------
# Goals and table lines
# ----------------------------------------------------------------------------------------------


@dataclass
class Goal:
    op: str  # "<=" or ">="
    target: float
    unit: str = "×"

    def miss_by(self, value: float | None) -> str:
        """How far a MISS is from the goal, e.g. "23% over" / "17% short"; "" otherwise."""
        if self.check(value) != "MISS":
            return ""
        if self.op == "<=":
            return f"{100 * (value / self.target - 1):.0f}% over"
        return f"{100 * (1 - value / self.target):.0f}% short"

    def check(self, value: float | None) -> str:
        if value is None or not isinstance(value, (int, float)) or math.isnan(value):
            return "-"
        ok = value <= self.target if self.op == "<=" else value >= self.target
        return "PASS" if ok else "MISS"

    def __str__(self) -> str:
        sign = "≤" if self.op == "<=" else "≥"
        return f"{sign} {self.target:g}{self.unit}"


@dataclass
class Line:
    """One row of the suite's table."""

    area: str
    measure: str
    value: float | None
    unit: str = "x"  # "x" (ratio), "frac" (fraction), "ms", "GiB", "GFLOP/s"
    goal: Goal | None = None
    detail: str = ""
    result: str = field(default="")

    def __post_init__(self):
        if not self.result:
            self.result = self.goal.check(self.value) if self.goal else ""

    def value_text(self) -> str:
        v = self.value
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        if self.unit == "x":
            return f"{v:.2f}×"
        if self.unit == "frac":
            return f"{v:.2f}"
        if self.unit == "ms":
            return f"{v:.1f} ms" if v >= 10 else f"{v:.2f} ms"
        if self.unit == "GiB":
            return f"{v:.3f} GiB"
        return f"{v:.1f} {self.unit}"

    def goal_text(self) -> str:
        return str(self.goal) if self.goal else ""

    def to_json(self) -> dict:
        d = asdict(self)
        d["goal"] = {"op": self.goal.op, "target": self.goal.target} if self.goal else None
        d["value"] = _finite(self.value)
        d["value_text"], d["goal_text"] = self.value_text(), self.goal_text()
        d["miss_by"] = self.goal.miss_by(self.value) if self.goal else ""
        return d


def _finite(v):
    return v if isinstance(v, (int, float)) and math.isfinite(v) else None


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def _find(rows: list[dict], key: str, prefix: str) -> dict | None:
    return next((r for r in rows if str(r.get(key, "")).startswith(prefix)), None)


def training_lines(rows: list[dict], data_rows: list[dict] | None = None) -> list[Line]:
    """From ``bench_train_step.run`` rows (+ ``bench_data`` rows for the data share)."""
    out: list[Line] = []
    method, dino = _find(rows, "what", "method step ("), _find(rows, "what", "DINO step")
    ratio = _find(rows, "what", "ratio method/DINO")
    if method is None or dino is None or ratio is None:
        return [Line("training", "clip step vs DINO step: rows missing", None, goal=Goal("<=", 1.3))]
    tm, bs, dev = method["seconds"], method.get("batch"), method.get("device", "?")
    views = method["what"][len("method step "):].strip("()")
    out.append(Line("training", "clip step vs plain DINO step (same model, same #views)", _num(ratio.get("ratio")),
                    goal=Goal("<=", 1.3),
                    detail=f"{tm * 1e3:.0f} vs {dino['seconds'] * 1e3:.0f} ms/step, batch {bs}, {views}, {dev}"))
    for part in ("backbone", "predictor", "dense_head"):
        r = _find(rows, "what", f"part: {part}")
        if r is not None:
            out.append(Line("training", f"step split: {part.replace('_', ' ')} fwd+bwd (share of step)",
                            _num(r.get("ratio")), unit="frac", detail=f"{r['seconds'] * 1e3:.1f} ms, timed alone"))
    clip = _find(data_rows or [], "case", "cache clip")
    if clip is not None and bs and clip.get("ms_per_clip") is not None:
        per_step = clip["ms_per_clip"] * bs
        out.append(Line("training", "step split: data, 1 worker (share of step)", per_step / (tm * 1e3), unit="frac",
                        detail=f"{per_step:.1f} ms = {bs} clips × {clip['ms_per_clip']:.2f} ms (bench_data cache clip); "
                               "overlapped by DataLoader workers in training"))
    peak = _num(method.get("peak_gib"))
    dpeak = _num(dino.get("peak_gib"))
    out.append(Line("training", "peak memory per clip (peak / batch)", peak / bs if peak is not None and bs else None,
                    unit="GiB",
                    detail=(f"DINO {dpeak / bs:.3f} GiB; batch {bs}" if dpeak is not None and bs else "CUDA only")))
    return out


def data_lines(rows: list[dict]) -> list[Line]:
    """From ``bench_data.run`` rows."""
    out: list[Line] = []
    floor = _find(rows, "case", "floor")
    cframes, vframes = _find(rows, "case", "cache frames"), _find(rows, "case", "video frames")
    cclip, vclip = _find(rows, "case", "cache clip"), _find(rows, "case", "video clip")
    if floor is None:
        return [Line("data", "rows missing (no floor row)", None)]
    k = floor.get("frames_per_clip", "K")
    fl = f"floor {floor['ms_per_clip']:.2f} ms/clip = read + imdecode {k} JPEGs"
    if cframes:
        out.append(Line("data", "clip decode, frames only (JPEG cache) vs bare JPEG-decode floor",
                        _num(cframes.get("x_floor")), goal=Goal("<=", 1.5),
                        detail=f"{cframes['ms_per_clip']:.2f} ms/clip; {fl}"))
    if cclip:
        out.append(Line("data", "clip decode + augment, full clip with views (JPEG cache) vs floor",
                        _num(cclip.get("x_floor")), goal=Goal("<=", 1.5),
                        detail=f"{cclip['ms_per_clip']:.2f} ms/clip (frames + all views, normalised)"))
    if vframes and cframes:
        out.append(Line("data", "from video vs from JPEG cache, frames only", vframes["ms_per_clip"] / cframes["ms_per_clip"],
                        detail=f"{vframes['ms_per_clip']:.2f} vs {cframes['ms_per_clip']:.2f} ms/clip; "
                               f"{vframes.get('video', '')}".rstrip("; ")))
    if vclip and cclip:
        out.append(Line("data", "from video vs from JPEG cache, full clip", vclip["ms_per_clip"] / cclip["ms_per_clip"],
                        detail=f"{vclip['ms_per_clip']:.2f} vs {cclip['ms_per_clip']:.2f} ms/clip"))
    for row in rows:  # the other formats and codecs, each against the same floor
        case = row["case"]
        other = case.startswith(("video frames ", "frame folder", "lerobot", "log frames "))
        if other and row.get("x_floor") is not None:
            out.append(Line("data", f"{case} vs JPEG-decode floor", _num(row["x_floor"]),
                            detail=f"{row['ms_per_clip']:.2f} ms/clip"))
    for row in rows:  # the video decoder chosen (PyAV) and its measured alternative (OpenCV)
        if row["case"].startswith("decoder "):
            ms = row.get("ms_per_clip")
            out.append(Line("data", f"{row['case']}: per clip", _num(ms) if ms is not None else None, unit="ms",
                            detail=(f"exact {row.get('exact', 0):.0%}" if ms is not None
                                    else row.get("note", "fails"))))
    loader = _find(rows, "case", "cache loader")
    if loader and loader.get("ms_per_clip") is not None:
        out.append(Line("data", f"{loader['case']}: per clip", _num(loader["ms_per_clip"]), unit="ms",
                        detail=f"{loader['clips_per_s']:.0f} clips/s, {loader['x_floor']:.2f}× floor"))
    return out


INFERENCE_GOALS = {1: 2.0, 32: 1.5}


def inference_lines(rows: list[dict]) -> list[Line]:
    """From ``bench_inference.run`` rows (speedup_vs_torch is timed side by side per group)."""
    out: list[Line] = []
    by = {(r["device"], r["backend"], r["batch"]): r for r in rows}
    batches = sorted({r["batch"] for r in rows})
    for b in batches:
        ort, eager = by.get(("cpu", "onnxruntime", b)), by.get(("cpu", "torch eager", b))
        if ort is None:
            continue
        goal = Goal(">=", INFERENCE_GOALS[b]) if b in INFERENCE_GOALS else None
        detail = f"{ort['latency_ms']:.1f} vs {eager['latency_ms']:.1f} ms" if eager else f"{ort['latency_ms']:.1f} ms"
        out.append(Line("inference", f"ONNX Runtime vs torch eager, CPU, batch {b} (speedup)",
                        _num(ort.get("speedup_vs_torch")), goal=goal, detail=f"{detail}; ViT-S/16 224"))
    gpu = [r for r in rows if r["device"] == "cuda" and r["backend"] != "torch eager"]
    for r in gpu:
        eager = by.get(("cuda", "torch eager", r["batch"]))
        detail = f"{r['latency_ms']:.2f} vs {eager['latency_ms']:.2f} ms" if eager else f"{r['latency_ms']:.2f} ms"
        out.append(Line("inference", f"{r['backend']} vs torch eager, CUDA, batch {r['batch']} (speedup)",
                        _num(r.get("speedup_vs_torch")), detail=detail))
    if not any("tensorrt" in r["backend"].lower() for r in rows):
        out.append(Line("inference", "TensorRT vs torch eager", None,
                        detail="not measured: needs CUDA + tensorrt (--full on a GPU)"))
    return out


def adapters_lines(rows: list[dict]) -> list[Line]:
    """From ``bench_adapters.run`` rows."""
    out: list[Line] = []
    w = _find(rows, "bench", "wrapper")
    if w is not None:
        out.append(Line("adapters", "wrapper step vs env step + bare encode", _num(w.get("ratio")),
                        goal=Goal("<=", w.get("goal") or 1.05),
                        detail=f"{w['wrapped_step_ms']:.2f} vs {w['env_step_plus_encode_ms']:.2f} ms; "
                               f"{w.get('backend')} on {w.get('device')}, cpu-tiny 96 px"))
    vec = [r for r in rows if r.get("bench") == "vector"]
    one = next((r for r in vec if r["num_envs"] == 1), None)
    for r in vec:
        if r["num_envs"] == 1:
            continue
        goal = Goal("<=", r["goal"]) if r.get("goal") else None
        base = f" vs {one['encode_per_env_ms']:.2f} ms at 1" if one else ""
        out.append(Line("adapters", f"vector wrapper: per-env encode cost, {r['num_envs']} envs vs 1",
                        _num(r.get("ratio")), goal=goal, detail=f"{r['encode_per_env_ms']:.2f} ms/env{base}"))
    return out


def flops_lines(rows: list[dict]) -> list[Line]:
    """From ``bench_flops.run`` rows."""
    out: list[Line] = []
    for r in rows:
        if r["case"].startswith("matmul peak"):
            out.append(Line("flops", f"{r['dtype']} matmul peak ({r['device']}, n={r['matmul_n']})",
                            _num(r["gflops_per_s"]), unit="GFLOP/s", detail=f"{r.get('threads')} threads"))
    for r in rows:
        if "fraction_of_peak" in r:
            out.append(Line("flops", f"forward {r['model']} {r['dtype']}: fraction of matmul peak",
                            _num(r["fraction_of_peak"]), unit="frac",
                            detail=f"{r['gflops_per_s']:.1f} GFLOP/s, {r['gflop_per_image']:.3f} GFLOP/img, "
                                   f"batch {r['batch']}"))
    return out


# ----------------------------------------------------------------------------------------------
# Sub-benchmarks
# ----------------------------------------------------------------------------------------------


@dataclass
class Bench:
    name: str
    module: str
    what: str
    kwargs: Callable[[bool, bool], dict]  # (quick, cuda) -> run() kwargs


def _train_kwargs(quick: bool, cuda: bool) -> dict:
    if quick:  # its own quick default is 3 alternating steps: too few for a stable ratio on a shared CPU
        return {"quick": True, "iters": 10}
    return {"quick": False, "preset": "gpu" if cuda else "cpu-tiny"}


BENCHES: dict[str, Bench] = {b.name: b for b in (
    Bench("training", "benchmarks.bench_train_step", "clip step vs DINO step, step split, peak memory", _train_kwargs),
    Bench("data", "benchmarks.bench_data", "clip decode + augment vs JPEG-decode floor, video vs cache",
          lambda quick, cuda: {"quick": quick}),
    Bench("inference", "benchmarks.bench_inference", "ONNX Runtime / TensorRT vs torch eager, ViT-S/16 224",
          lambda quick, cuda: {"quick": quick}),
    Bench("adapters", "benchmarks.bench_adapters", "gym wrapper overhead, vector batching",
          lambda quick, cuda: {"quick": quick}),
    Bench("flops", "benchmarks.bench_flops", "encoder forward FLOP rate vs measured matmul peak",
          lambda quick, cuda: {"quick": quick}),
)}


def build_lines(results: dict[str, dict]) -> list[Line]:
    """The table: one block per sub-benchmark, in BENCHES order; skipped/failed ones get one line."""
    lines: list[Line] = []
    data_rows = results.get("data", {}).get("rows") or []
    for name in BENCHES:
        res = results.get(name)
        if res is None:
            continue
        if res["status"] != "ok":
            lines.append(Line(name, f"{res['status'].upper()}: {res.get('error', '')}", None, result=res["status"].upper()))
            continue
        rows = res["rows"]
        try:
            if name == "training":
                lines += training_lines(rows, data_rows)
            elif name == "data":
                lines += data_lines(rows)
            elif name == "inference":
                lines += inference_lines(rows)
            elif name == "adapters":
                lines += adapters_lines(rows)
            elif name == "flops":
                lines += flops_lines(rows)
        except Exception as e:  # a row format the suite does not know: say so, keep the rest
            lines.append(Line(name, f"FAILED to read rows: {type(e).__name__}: {e}", None, result="FAILED"))
    return lines


def _restore_threads() -> Callable[[], None]:
    """Sub-benchmarks pin thread counts (bench_data: torch and cv2 to 1); undo that after each."""
    import torch

    n_torch = torch.get_num_threads()
    try:
        import cv2

        n_cv2 = cv2.getNumThreads()
    except ImportError:
        cv2, n_cv2 = None, None

    def restore():
        torch.set_num_threads(n_torch)
        if cv2 is not None:
            cv2.setNumThreads(n_cv2)

    return restore


def load_average() -> float | None:
    """1-minute load average (other processes on a shared machine make every number noisy)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def busy_warning(results: dict[str, dict], cores: int | None = None) -> str:
    """A warning line when the machine was loaded by more than this suite (load > cores)."""
    cores = cores or os.cpu_count() or 1
    loads = [v for r in results.values() for v in (r.get("load_before"), r.get("load_after")) if v is not None]
    if loads and max(loads) > cores:
        return (f"WARNING: the machine was busy (1-min load average up to {max(loads):.1f} on {cores} cores, "
                "this suite counts for at most ~cores): absolute times and ratios are noisy; rerun on a quiet machine")
    return ""


def run_bench(bench: Bench, quick: bool, cuda: bool) -> dict:
    kwargs = bench.kwargs(quick, cuda)
    res: dict = {"module": bench.module, "kwargs": kwargs, "load_before": load_average()}
    try:
        mod = importlib.import_module(bench.module)
        fn = getattr(mod, "run", None)
        if not callable(fn):
            raise AttributeError(f"{bench.module} has no run()")
    except Exception as e:
        return {**res, "status": "skipped", "error": f"{type(e).__name__}: {e}", "seconds": 0.0, "rows": []}
    restore = _restore_threads()
    t0 = time.perf_counter()
    try:
        rows = fn(**kwargs)
        res.update(status="ok", rows=list(rows))
    except Exception as e:
        traceback.print_exc()
        res.update(status="failed", error=f"{type(e).__name__}: {e}", rows=[])
    finally:
        restore()
    res["seconds"] = time.perf_counter() - t0
    res["load_after"] = load_average()
    return res


# ----------------------------------------------------------------------------------------------
# Output: text / Markdown table, JSON
# ----------------------------------------------------------------------------------------------

HEADERS = ("area", "measure", "value", "goal", "result", "detail")


def _cells(line: Line) -> tuple[str, ...]:
    return (line.area, line.measure, line.value_text(), line.goal_text(), line.result, line.detail)


def format_text(lines: list[Line]) -> str:
    cells = [HEADERS] + [_cells(line) for line in lines]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADERS) - 1)]
    out = []
    for j, c in enumerate(cells):
        out.append("  ".join(c[i].rjust(widths[i]) if i == 2 else c[i].ljust(widths[i])
                             for i in range(len(HEADERS) - 1)) + "  " + c[-1])
        if j == 0:
            out.append("-" * (sum(widths) + 2 * (len(widths) - 1) + 8))
    return "\n".join(line.rstrip() for line in out)


def format_markdown(lines: list[Line]) -> str:
    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    out = ["| " + " | ".join(HEADERS) + " |", "|" + "|".join(["---"] * 2 + ["---:"] + ["---"] * 3) + "|"]
    for line in lines:
        c = list(_cells(line))
        if c[4] in ("PASS", "MISS"):
            c[4] = f"**{c[4]}**"
        out.append("| " + " | ".join(esc(x) for x in c) + " |")
    return "\n".join(out)


def summary(lines: list[Line]) -> str:
    judged = [line for line in lines if line.result in ("PASS", "MISS")]
    missed = [line for line in judged if line.result == "MISS"]
    broken = [line for line in lines if line.result in ("SKIPPED", "FAILED")]
    s = f"goals: {len(judged) - len(missed)}/{len(judged)} PASS"
    if missed:
        s += "; MISS: " + "; ".join(f"{m.area}: {m.measure} {m.value_text()} (goal {m.goal_text()}, "
                                    f"{m.goal.miss_by(m.value)})" for m in missed)
    if broken:
        s += "; not run: " + ", ".join(f"{b.area} ({b.result})" for b in broken)
    return s


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name() -> str | None:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:
        return None


def machine_slug(system: str | None = None, arch: str | None = None, cpu: str | None = None,
                 cores: int | None = None, gpu: str | None = "auto") -> str:
    """e.g. ``linux-x86_64-amd-epyc-2c`` or ``linux-x86_64-...-16c-nvidia-h100-80gb-hbm3``."""
    system = system or platform.system()
    arch = arch or platform.machine()
    cpu = cpu or cpu_model()
    cores = cores or os.cpu_count() or 0
    gpu = gpu_name() if gpu == "auto" else gpu
    cpu = re.sub(r"\((r|tm)\)|\bcpu\b|processor|@.*$|\d+-core", " ", cpu, flags=re.I)
    parts = [system, arch.replace("_", "-"), cpu, f"{cores}c"] + ([gpu] if gpu else [])
    return "-".join(_slug(p) for p in parts if _slug(p)).replace("x86-64", "x86_64")


def versions() -> dict:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("vidistill", "torch", "torchvision", "timm", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu",
                 "opencv-python-headless", "opencv-python", "gymnasium", "tensorrt"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    try:
        import torch

        out["torch_cuda"] = torch.version.cuda
        out["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    try:
        root = Path(__file__).resolve().parent.parent
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
        if commit.returncode == 0:
            out["git_commit"] = commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def _jsonable(x):
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if x is None or isinstance(x, (str, int, bool)):
        return x
    return str(x)


def build_report(results: dict[str, dict], lines: list[Line], quick: bool, argv: list[str] | None = None,
                 machine: str | None = None) -> dict:
    return _jsonable({
        "machine": machine or machine_slug(),
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "mode": "quick" if quick else "full",
        "command": " ".join(["python -m benchmarks", *(argv or [])]),
        "host": {"platform": platform.platform(), "cpu": cpu_model(), "cores": os.cpu_count(), "gpu": gpu_name()},
        "versions": versions(),
        "summary": summary(lines),
        "table": [line.to_json() for line in lines],
        "benchmarks": results,
    })


def default_output(quick: bool, only: list[str] | None, machine: str | None = None) -> Path:
    name = machine or machine_slug()
    if not quick:
        name += "-full"
    if only and set(only) != set(BENCHES):
        name += "-only-" + "-".join(only)
    return RESULTS_DIR / f"{name}.json"


def write_json(report: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
    return path


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0],
                                epilog="benchmarks: " + "; ".join(f"{b.name}: {b.what}" for b in BENCHES.values()))
    p.add_argument("--full", action="store_true", help="GPU sizes (default: quick, fits 2 CPU cores)")
    p.add_argument("--only", nargs="+", metavar="NAME", choices=list(BENCHES), help="run only these benchmarks")
    p.add_argument("--output", type=Path, help="JSON path (default: benchmarks/results/<machine>[-full].json)")
    p.add_argument("--no-save", action="store_true", help="do not write the JSON")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    a = p.parse_args(argv)
    quick = not a.full
    names = a.only or list(BENCHES)
    try:
        import torch

        cuda = torch.cuda.is_available()
    except ImportError:
        cuda = False
    machine = machine_slug()
    print(f"vidistill benchmarks ({'quick' if quick else 'full'}) on {machine}: {', '.join(names)}", flush=True)
    results: dict[str, dict] = {}
    t_all = time.perf_counter()
    for i, name in enumerate(names, 1):
        bench = BENCHES[name]
        print(f"[{i}/{len(names)}] {name}: {bench.what} ...", flush=True)
        res = run_bench(bench, quick, cuda)
        results[name] = res
        msg = {"ok": f"{len(res['rows'])} rows", "skipped": f"SKIPPED ({res.get('error')})",
               "failed": f"FAILED ({res.get('error')})"}[res["status"]]
        load = f", load {res.get('load_before')} -> {res.get('load_after')}" if res.get("load_after") is not None else ""
        print(f"[{i}/{len(names)}] {name}: {msg}, {res['seconds']:.0f} s{load}", flush=True)
    total = time.perf_counter() - t_all
    lines = build_lines(results)
    report = build_report(results, lines, quick, argv, machine)
    report["total_seconds"] = round(total, 1)
    warning = busy_warning(results)
    report["warning"] = warning
    if not a.no_save:
        path = write_json(report, a.output or default_output(quick, a.only, machine))
        print(f"results: {path}")
    print()
    print(f"{machine}, {'quick' if quick else 'full'}, {total / 60:.1f} min; ratios measured side by side in this run")
    print(format_markdown(lines) if a.markdown else format_text(lines))
    print(summary(lines))
    if warning:
        print(warning)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
