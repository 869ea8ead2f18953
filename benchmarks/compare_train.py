"""``vidistill train`` clips/s of several variants, alternated in one run: source trees (a baseline
commit vs now) and settings (DataLoader workers, torch threads).

Each round runs every variant once, in turn, as its own ``python -m vidistill train`` process
(``--max-steps N``, a fresh run folder), so background load hits them alike; a variant's figure is
the median over rounds of its run's median clips/s after the first ``--skip`` steps (start-up and
warm-up excluded). The load average is printed with the table.

    # a commit (its vidistill/ from git archive) against this tree
    python -m benchmarks.compare_train --video VIDEO --rev before=5f684e2 --tree after=. --rounds 3
    python -m benchmarks.compare_train --video VIDEO --tree base=/tmp/base --tree now=. --rounds 3
    python -m benchmarks.compare_train --video VIDEO --variant "w2=--num-workers 2" \\
        --variant "w1=--num-workers 1" --variant "w0=--num-workers 0" --variant "w2 t1=--num-workers 2 @OMP_NUM_THREADS=1"

A variant is ``label=ARGS``; an ``@NAME=VALUE`` word in ARGS sets an environment variable instead,
and ``%processes=N`` runs the variant as N data-parallel processes on this machine (``torchrun
--standalone``, gloo: the global batch is ``--batch-size`` x N), e.g. two processes of one thread
at half the batch each, against one process of two threads:

    python -m benchmarks.compare_train --video VIDEO --variant "1x2=" \
        --variant "2x1=%processes=2 --batch-size 4 --num-workers 1 @OMP_NUM_THREADS=1"
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Variant:
    label: str
    tree: Path
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    processes: int = 1


def parse_variant(text: str, tree: Path) -> Variant:
    label, sep, rest = text.partition("=")
    if not sep or not label:
        raise SystemExit(f"--variant expects LABEL=ARGS, got {text!r}")
    args, env, processes = [], {}, 1
    for word in rest.split():
        if word.startswith("%processes="):
            processes = int(word.partition("=")[2])
        elif word.startswith("@"):
            name, _, value = word[1:].partition("=")
            env[name] = value
        else:
            args.append(word)
    return Variant(label, tree, args, env, processes)


def run_clips_per_s(log_path: Path, skip: int) -> float:
    """Median clips/s of a run's log.jsonl records after the first ``skip`` steps."""
    records = [json.loads(x) for x in log_path.read_text().splitlines() if x.strip()]
    rates = [r["clips_per_s"] for r in records if r.get("step", 0) > skip]
    if not rates:
        raise ValueError(f"{log_path}: no step after the first {skip}")
    return statistics.median(rates)


def run_variant(v: Variant, video: str, preset: str, steps: int, skip: int, workdir: Path) -> float:
    out = Path(tempfile.mkdtemp(prefix=f"{v.label.replace(' ', '_')}-", dir=workdir))
    env = {**os.environ, **v.env, "PYTHONPATH": str(v.tree.resolve())}
    launcher = [sys.executable, "-m", "vidistill"] if v.processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={v.processes}", "-m", "vidistill"]
    cmd = [*launcher, "train", "--video", video, "--preset", preset,
           "--max-steps", str(steps), "--output", str(out / "run"), "--set", "train.progress=false",
           "--set", f"train.checkpoint_every={steps + 1}", *v.args]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=v.tree)
    if r.returncode != 0:
        raise RuntimeError(f"{v.label}: exit {r.returncode}: {r.stderr[-2000:]}")
    return run_clips_per_s(out / "run" / "log.jsonl", skip)


def unpack_rev(rev: str, folder: Path) -> Path:
    """``rev``'s ``vidistill/`` package (``git archive``) in ``folder``, a tree to run."""
    folder.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", rev, "vidistill"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", required=True)
    p.add_argument("--preset", default="cpu-tiny")
    p.add_argument("--tree", action="append", default=[], metavar="LABEL=PATH",
                   help="a source tree to run (default: this one)")
    p.add_argument("--rev", action="append", default=[], metavar="LABEL=REV",
                   help="a commit of this repository to run (its vidistill/, unpacked to a temporary folder)")
    p.add_argument("--variant", action="append", default=[], metavar="LABEL=ARGS",
                   help="extra train arguments (in each tree)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--skip", type=int, default=3, help="first steps left out of the median")
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    video = str(Path(a.video).resolve())  # each run's working directory is its tree
    work = Path(tempfile.mkdtemp(prefix="vidistill-compare-"))
    trees = [(lbl, unpack_rev(rev, work / f"rev-{lbl}")) for lbl, _, rev in (r.partition("=") for r in a.rev)]
    trees += [(lbl, Path(path)) for lbl, _, path in (t.partition("=") for t in a.tree)]
    trees = trees or [("", Path("."))]
    variants = []
    for tl, tp in trees:
        for text in a.variant or ["default="]:
            v = parse_variant(text, tp)
            v.label = " ".join(x for x in (tl, v.label) if x)
            variants.append(v)
    before = load()
    rates: dict[str, list[float]] = {v.label: [] for v in variants}
    try:
        for _ in range(a.rounds):
            for v in variants:
                rates[v.label].append(run_variant(v, video, a.preset, a.steps, a.skip, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(rates[variants[0].label])
    print(f"load (1/5/15 min) {before} -> {load()}; {a.rounds} rounds x {a.steps} steps, median after step {a.skip}")
    print(f"{'variant':32s} {'clips/s':>8s} {'vs first':>8s}  rounds")
    for v in variants:
        m = statistics.median(rates[v.label])
        print(f"{v.label:32s} {m:8.2f} {m / base:8.2f}x  {' '.join(f'{x:.1f}' for x in rates[v.label])}")


if __name__ == "__main__":
    main()
