"""Table 1 of the paper, on the simulated robot benchmark: same compute for every variant.

Each variant trains with the SAME steps, batch, model and resolution (the ``cpu-tiny`` preset
unless ``--preset``/``--set`` say otherwise) on the training videos of a ``render.py`` output,
for each seed; its teacher is then probed on the HELD-OUT probe sets (train on set A, score on
set B; never on training video): Fast-LP segmentation (mIoU) and a linear depth probe (RMSE,
delta<1.25). Collapse is read from each run's ``log.jsonl``.

    python -m benchmarks.sim_robot.table1 --output bench/table1                 # hours on 2 cores
    python -m benchmarks.sim_robot.table1 --output /tmp/t1 --quick              # minutes, 1 seed

Rerunning the same command resumes: finished runs are not retrained (the trainer resumes a run
folder) and probed runs are not re-probed (``results/*.json``); ``--force-probe`` redoes probes.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path

from benchmarks.common import fill_sizes, mean_std_cell, render_table, stats, weight_drift

log = logging.getLogger("sim_robot.table1")

# Table 1 rows: name -> config overrides (None = random init: no training).
VARIANTS: dict[str, dict | None] = {
    "random init": None,
    "DINO (frames)": {"objective": "dino", "data.pre_crop": False, "data.time_aug_delta": 0},
    "+ pre-crop": {"objective": "dino", "data.pre_crop": True, "data.time_aug_delta": 0},
    "+ time-aug Δ=5": {"objective": "dino", "data.pre_crop": True, "data.time_aug_delta": 5},
    "Ours (dense+global)": {"objective": "dense+global", "data.pre_crop": True},
    "global-loss only": {"objective": "global", "data.pre_crop": True},
    "dense-loss only": {"objective": "dense", "data.pre_crop": True},
}
SLUGS = {
    "random init": "random",
    "DINO (frames)": "dino",
    "+ pre-crop": "dino-precrop",
    "+ time-aug Δ=5": "dino-timeaug5",
    "Ours (dense+global)": "ours",
    "global-loss only": "global",
    "dense-loss only": "dense",
}

# The settings every variant trains with (collapse remedies found on training logs only).
DEFAULT_CONFIG = Path(__file__).with_name("table1.yaml")

# FULL is sized to finish in about 1.5 h on 2 CPU cores (6 trained rows x 3 seeds + probes).
FULL = dict(steps=300, batch=16, seeds=[0, 1, 2], episodes=8, frames=300, size=256, probe_episodes=6,
            probe_frames=10, probe_iters=1000, probe_size=192, label_size=96)
QUICK = dict(steps=40, batch=8, seeds=[0], episodes=2, frames=120, size=256, probe_episodes=2,
             probe_frames=6, probe_iters=200, probe_size=0, label_size=0)


# ---- collapse -------------------------------------------------------------------------------


def collapse_summary(run_dir: Path, out_dim: int | None = None) -> dict:
    """What the run's log.jsonl says about collapse (the trainer writes a ``collapsed`` flag per
    step from teacher entropy and KL)."""
    path = Path(run_dir) / "log.jsonl"
    if not path.is_file():
        return {"logged": False}
    records = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a kill mid-write
    if not records:
        return {"logged": False}
    flagged = [r["step"] for r in records if r.get("collapsed")]
    last = records[-1]
    tail = records[-max(1, len(records) // 10) :]  # the last 10% of the run

    def mean_of(key: str) -> float | None:
        vals = [r[key] for r in tail if isinstance(r.get(key), (int, float))]
        return sum(vals) / len(vals) if vals else None

    summary = {
        "logged": True,
        "steps": last.get("step"),
        "collapsed": bool(last.get("collapsed")),  # collapsed at the end of the run
        "ever_collapsed": bool(flagged),
        "first_collapsed_step": flagged[0] if flagged else None,
        "final_loss": mean_of("loss"),
        "final_teacher_entropy": mean_of("teacher_entropy"),
        "final_kl": mean_of("kl"),
    }
    for branch in ("dense", "global"):
        if f"{branch}/teacher_entropy" in last:
            summary[f"{branch}_teacher_entropy"] = mean_of(f"{branch}/teacher_entropy")
            summary[f"{branch}_kl"] = mean_of(f"{branch}/kl")
    if out_dim:
        summary["log_out_dim"] = math.log(out_dim)
    return summary


# ---- aggregation and the table --------------------------------------------------------------

METRICS = (  # key in a result, column title, format, higher is better
    ("miou", "Fast-LP mIoU", "{:.1f}", True),
    ("pixel_accuracy", "pix.acc", "{:.1f}", True),
    ("depth_rmse", "depth RMSE (m)", "{:.3f}", False),
    ("depth_delta1", "δ<1.25", "{:.1f}", True),
)


def aggregate(results: list[dict], branch: str = "teacher") -> dict:
    """Per variant: mean and sample std over seeds of each metric, collapse counts and how far
    the backbones moved from their init. ``branch="student"`` aggregates the student probes
    (``--probe-student``) instead of the teacher's."""
    table: dict[str, dict] = {}
    for variant in VARIANTS:
        runs = [r for r in results if r["variant"] == variant]
        if branch == "student":  # at init the student is the teacher: random init stays as it is
            runs = [{**r, **r["student"]} if "student" in r else r
                    for r in runs if "student" in r or VARIANTS[variant] is None]
        if not runs:
            continue
        row: dict = {"seeds": [r["seed"] for r in runs]}
        for key, *_ in METRICS:
            row[key] = stats([r.get(key) for r in runs])
        for b in ("teacher", "student"):
            row[f"{b}_drift"] = stats([r.get("weight_drift", {}).get(b) for r in runs])
        row["collapsed_runs"] = sum(bool(r.get("collapse", {}).get("collapsed")) for r in runs)
        row["ever_collapsed_runs"] = sum(bool(r.get("collapse", {}).get("ever_collapsed")) for r in runs)
        table[variant] = row
    return table


def format_table(table: dict, branch: str = "teacher", markdown: bool = False) -> str:
    """The table in the shape of the paper's Table 1: mean ± std over seeds, then the collapsed
    runs and how far the probed backbone moved from its init (% of its weight norm)."""
    head = ["Method", *(title for _, title, _, _ in METRICS), "collapsed", f"{branch} moved"]

    lines = []
    for variant, row in table.items():
        cells = [variant, *(mean_std_cell(row[key], fmt) for key, _, fmt, _ in METRICS)]
        n = len(row["seeds"])
        cells.append("–" if variant == "random init" else f"{row['collapsed_runs']}/{n}")
        drift = row[f"{branch}_drift"]
        cells.append("–" if drift["mean"] is None else f"{100 * drift['mean']:.1f}%")
        lines.append(cells)
    return render_table(head, lines, markdown)


# ---- one run --------------------------------------------------------------------------------


def train_config(preset: str, config_file: Path | None, videos: list[str], run_dir: Path, steps: int, batch: int,
                 seed: int, variant_overrides: dict, extra: dict):
    from vidistill.config import build_config

    overrides = {
        "data.videos": videos,
        "train.output": str(run_dir),
        "train.max_steps": steps,
        "optim.batch_size": batch,
        "train.seed": seed,
        "train.progress": False,
        **variant_overrides,
        **extra,
    }
    return build_config(preset, config_file, overrides=overrides)


def probe_run(encoder_path: Path, probe_dir: Path, iters: int, probe_size: int | None, label_size: int | None,
              seed: int, device: str, branch: str = "teacher") -> dict:
    from vidistill.eval.tasks import ProbeSettings, depth_probe, segmentation_probe
    from vidistill.runtime import load_encoder

    encoder = load_encoder(encoder_path, image_size=probe_size or None, device=device, branch=branch)
    settings = ProbeSettings(iters=iters, seed=seed, label_size=label_size or None)
    seg = segmentation_probe(encoder, probe_dir, settings)
    depth = depth_probe(encoder, probe_dir, settings)
    return {
        "miou": seg["miou"],
        "pixel_accuracy": seg["pixel_accuracy"],
        "per_class_iou": seg["per_class_iou"],
        "depth_rmse": depth["rmse"],
        "depth_delta1": depth["delta1"],
        "depth_abs_rel": depth["abs_rel"],
        "probe_image_size": seg["image_size"],
        "grid": seg["grid"],
    }


def init_checkpoint(args, videos: list[str], seed: int, extra: dict) -> Path:
    """The seed's random-init checkpoint (the "random init" row; every trained row starts from it)."""
    from vidistill.train.checkpoint import write_random_init_checkpoint

    ckpt = args.output / "runs" / f"{SLUGS['random init']}_s{seed}" / "checkpoint.pt"
    if not ckpt.is_file():
        cfg = train_config(args.preset, args.config, videos, ckpt.parent, args.steps, args.batch, seed, {}, extra)
        write_random_init_checkpoint(cfg, ckpt, seed=seed)
    return ckpt


def run_variant(variant: str, seed: int, args, videos: list[str], probe_dir: Path, extra: dict) -> dict:
    slug = f"{SLUGS[variant]}_s{seed}"
    result_path = args.output / "results" / f"{slug}.json"
    overrides = VARIANTS[variant]
    init_ckpt = init_checkpoint(args, videos, seed, extra)
    if result_path.is_file() and not args.force_probe:
        log.info("%s: done before (%s)", slug, result_path)
        result = json.loads(result_path.read_text())
        before = dict(result)
    else:
        before = {}
        t0 = time.perf_counter()
        if overrides is None:
            run_dir = init_ckpt.parent
            collapse: dict = {"logged": False}
        else:
            from vidistill.train import train

            cfg = train_config(args.preset, args.config, videos, args.output / "runs" / slug, args.steps, args.batch,
                               seed, overrides, extra)
            log.info("training %s (seed %d): %d steps, batch %d", variant, seed, args.steps, args.batch)
            run_dir = Path(train(cfg))
            collapse = collapse_summary(run_dir, cfg.model.out_dim)
        t1 = time.perf_counter()
        metrics = probe_run(run_dir, probe_dir, args.probe_iters, args.probe_size, args.label_size, seed,
                            args.device)
        t2 = time.perf_counter()
        result = {
            "variant": variant, "seed": seed, "run_dir": str(run_dir), **metrics, "collapse": collapse,
            "config_overrides": overrides, "seconds": {"train": t1 - t0, "probe": t2 - t1},
        }
        log.info("%s: mIoU %.2f, depth RMSE %.3f m, collapsed %s", slug, result["miou"], result["depth_rmse"],
                 collapse.get("collapsed"))
    # Diagnostics, added to earlier results on a rerun too.
    if overrides is not None and "weight_drift" not in result:
        from vidistill.runtime.checkpoints import backbone_state

        result["weight_drift"] = weight_drift(Path(result["run_dir"]) / "checkpoint.pt", backbone_state(init_ckpt)[0])
    if args.probe_student and overrides is not None and "student" not in result:
        log.info("%s: probing the student backbone (diagnostic)", slug)
        result["student"] = probe_run(Path(result["run_dir"]), probe_dir, args.probe_iters, args.probe_size,
                                      args.label_size, seed, args.device, branch="student")
    if result != before:
        result_path.parent.mkdir(parents=True, exist_ok=True)
        result_path.write_text(json.dumps(result, indent=2) + "\n")
    return result


# ---- main -----------------------------------------------------------------------------------



def ensure_data(args) -> tuple[list[str], Path]:
    data = args.data or (args.output / "data")
    manifest = data / "manifest.json"
    if not manifest.is_file():
        if args.data:
            raise SystemExit(f"{data}: no manifest.json; render it first: "
                             f"python -m benchmarks.sim_robot.render --output {data}")
        from benchmarks.sim_robot.render import render_benchmark

        log.info("rendering the benchmark into %s", data)
        render_benchmark(data, episodes=args.episodes, frames=args.frames, size=args.size, seed=args.render_seed,
                         probe_episodes=args.probe_episodes, probe_frames=args.probe_frames)
    m = json.loads(manifest.read_text())
    videos = [str(data / v) for v in m["videos"]]
    return videos, data / m.get("probe", "probe")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", type=Path, required=True, help="benchmark folder (runs/, results/, table1.json)")
    ap.add_argument("--data", type=Path, default=None,
                    help="a render.py output (default: OUTPUT/data, rendered if missing)")
    ap.add_argument("--quick", action="store_true", help="a small size: one seed, few steps, a small render")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="training seeds (default 0 1 2)")
    ap.add_argument("--steps", type=int, default=None, help=f"optimiser steps per run (default {FULL['steps']})")
    ap.add_argument("--batch", type=int, default=None, help=f"clips per step (default {FULL['batch']})")
    ap.add_argument("--preset", default="cpu-tiny", help="config preset for every run (default cpu-tiny)")
    ap.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                    help="config file for every run, over the preset (default: table1.yaml beside this script)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for every run, e.g. --set model.arch=vit_small_patch16_224")
    ap.add_argument("--variants", nargs="+", default=None, choices=list(SLUGS.values()),
                    help="only these rows (default: all)")
    ap.add_argument("--probe-iters", type=int, default=None, help="probe head iterations (default 1000)")
    ap.add_argument("--probe-size", type=int, default=None,
                    help="probe input size (default 192: a 12x12 grid for ViT/16; 0 = the training resolution)")
    ap.add_argument("--label-size", type=int, default=None,
                    help="probe training target size (default 96; validation is scored at full resolution)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    ap.add_argument("--force-probe", action="store_true", help="re-probe runs that have results")
    ap.add_argument("--probe-student", action="store_true",
                    help="also probe each run's student backbone (a diagnostic table; the teacher is what ships)")
    g = ap.add_argument_group("rendering when --data is not given")
    g.add_argument("--episodes", type=int, default=None)
    g.add_argument("--frames", type=int, default=None)
    g.add_argument("--size", type=int, default=None)
    g.add_argument("--probe-episodes", type=int, default=None)
    g.add_argument("--probe-frames", type=int, default=None)
    g.add_argument("--render-seed", type=int, default=0)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    fill_sizes(args, QUICK if args.quick else FULL)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    args.output.mkdir(parents=True, exist_ok=True)
    from vidistill.config import parse_set

    extra = parse_set(args.set)
    videos, probe_dir = ensure_data(args)
    variants = [v for v in VARIANTS if args.variants is None or SLUGS[v] in args.variants]
    results = []
    for seed in args.seeds:
        for variant in variants:
            results.append(run_variant(variant, seed, args, videos, probe_dir, extra))
    table = aggregate(results)
    student_table = aggregate(results, branch="student") if any("student" in r for r in results) else {}
    text = format_table(table, markdown=args.markdown)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    report = {"settings": settings, "overrides": extra, "table": table, "runs": results,
              "note": "mIoU, pixel accuracy and delta1 in percent, RMSE in metres; ± is the sample "
                      "std over seeds; probes train on held-out set A and score on set B; drift is "
                      "||w - w_init|| / ||w_init|| over the backbone"}
    if student_table:
        report["student_table"] = student_table
    (args.output / "table1.json").write_text(json.dumps(report, indent=2, default=_json_default) + "\n")
    print(text)
    print(f"\n(mean ± std over seeds {args.seeds}; {args.steps} steps x batch {args.batch}, preset "
          f"{args.preset} + {args.config}; JSON: {args.output / 'table1.json'})")
    if student_table:
        print("\nDiagnostic: the same probes on each run's STUDENT backbone (the teacher is what ships)")
        print(format_table(student_table, branch="student", markdown=args.markdown))
    return 0


def _json_default(obj):
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    return str(obj)


if __name__ == "__main__":
    sys.exit(main())
