"""Adapt a pretrained encoder to the robot's own footage (issue 12's proof), on the sim robot.

Scene A is the base encoder's world; scene B is "the robot's own footage" (other objects, light,
surfaces and camera; ``render.py --scene b``). The base is a ViT-Ti/16 trained supervised on scene
A's renderer labels (``base.py``), saved in timm's hub layout. Each row then gets the SAME
adaptation compute on scene B's training video (steps x batch x resolution) and is probed on
HELD-OUT stills of both scenes (never used for any choice here): Fast-LP segmentation mIoU and a
linear depth probe. Scene B measures adaptation; scene A measures forgetting.

Rows (3 seeds each): random init; base as is; base + vidistill adaptation (``vidistill train
--init BASE --preset adapt``); the same with the Gram anchor; base + DINO-style adaptation
(``--objective dino``); from scratch with the same steps. Every trained teacher is exported
(``vidistill export --no-onnx``) and the EXPORT is probed (what ships); students are a diagnostic.

    python -m benchmarks.adapt.run --output bench/adapt            # the full table (~1 h on 2 busy cores)
    python -m benchmarks.adapt.run --output /tmp/adapt --quick     # a smoke run (about a minute)

Rerunning the same command resumes: rendered data, the base, finished runs and probed results are
reused (``results/*.json``; ``--force-probe`` re-probes).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from benchmarks.adapt import base as base_encoder
from benchmarks.common import fill_sizes, mean_std_cell, render_table, stats, weight_drift

HERE = Path(__file__).resolve().parent

log = logging.getLogger("adapt.run")

# Row -> how it is made. "train" rows run `vidistill train` on scene B's video with the same steps,
# batch and resolution; `init` says whether they start from the base.
ROWS: dict[str, dict] = {
    "random init": {"kind": "random"},
    "base (as is)": {"kind": "base"},
    "base + vidistill": {"kind": "train", "init": True, "args": []},
    "base + vidistill + Gram": {"kind": "train", "init": True, "args": ["gram"]},
    "base + DINO": {"kind": "train", "init": True, "args": ["--objective", "dino"]},
    "from scratch": {"kind": "train", "init": False, "args": []},
}
SLUGS = {"random init": "random", "base (as is)": "base", "base + vidistill": "vidistill",
         "base + vidistill + Gram": "vidistill-gram", "base + DINO": "dino", "from scratch": "scratch"}

# Sized to finish in about an hour on 2 CPU cores shared with other work.
FULL = dict(seeds=[0, 1, 2], steps=20, batch=8, base_steps=200, probe_iters=300, probe_size=192, label_size=48,
            render_size=192, a_episodes=10, a_frames=90, a_fps=10.0, a_labelled_every=2, b_episodes=6, b_frames=240,
            probe_episodes=4, probe_frames=8)
QUICK = dict(seeds=[0], steps=2, batch=2, base_steps=3, probe_iters=5, probe_size=64, label_size=32, render_size=64,
             a_episodes=1, a_frames=8, a_fps=10.0, a_labelled_every=2, b_episodes=1, b_frames=12,
             probe_episodes=1, probe_frames=2)
QUICK_SET = ["data.frame_stride=2", "data.num_frames=2", "data.num_workers=0", "model.out_dim=256",
             "model.head_hidden_dim=64", "model.head_bottleneck_dim=32", "data.global_size=32", "data.local_size=16"]

SETTINGS = HERE / "adapt.yaml"  # CPU sizes over the presets (every trained row)
GRAM_WEIGHT = 2.0  # DINOv3's Gram loss weight, taken as is (not tuned here)


def gram_args() -> list[str]:
    return ["--gram-weight", str(GRAM_WEIGHT)]


# ---- data and base --------------------------------------------------------------------------


def ensure_scene(root: Path, scene: str, args) -> dict:
    manifest = root / "manifest.json"
    if not manifest.is_file():
        from benchmarks.sim_robot.render import render_benchmark

        a = scene == "a"
        log.info("rendering scene %s into %s", scene, root)
        render_benchmark(root, episodes=args.a_episodes if a else args.b_episodes,
                         frames=args.a_frames if a else args.b_frames, size=args.render_size, seed=0,
                         probe_episodes=args.probe_episodes, probe_frames=args.probe_frames,
                         fps=args.a_fps if a else 30.0, scene=scene, labelled_every=args.a_labelled_every if a else 0)
    return json.loads(manifest.read_text())


def ensure_base(args, scene_a: Path) -> Path:
    folder = args.output / "base"
    if not (folder / "model.safetensors").is_file():
        from vidistill.config import IMAGENET_MEAN, IMAGENET_STD

        settings = base_encoder.BaseSettings(steps=args.base_steps, image_size=args.train_size)
        log.info("training the base encoder on scene A's labels: %d steps", settings.steps)
        rec = base_encoder.train_base(scene_a / "labelled", folder, settings, IMAGENET_MEAN, IMAGENET_STD)
        log.info("base: %.0f s, seg loss %.3f -> %.3f", rec["seconds"], rec["first_seg_loss"], rec["final_seg_loss"])
    return folder


# ---- probing --------------------------------------------------------------------------------


def hub_encoder(folder: Path, image_size: int, device: str):
    """A timm hub folder (config.json + model.safetensors) served by the runtime's torch backend."""
    from vidistill.runtime import load_encoder

    return load_encoder(folder, backend="torch", device=device, image_size=image_size or None, precision="fp32")


def probe(encoder, data: Path, args, seed: int) -> dict:
    from vidistill.eval.tasks import ProbeSettings, depth_probe, segmentation_probe

    settings = ProbeSettings(iters=args.probe_iters, seed=seed, label_size=args.label_size or None)
    seg = segmentation_probe(encoder, data, settings)
    depth = depth_probe(encoder, data, settings)
    return {"miou": seg["miou"], "pixel_accuracy": seg["pixel_accuracy"], "per_class_iou": seg["per_class_iou"],
            "depth_rmse": depth["rmse"], "depth_delta1": depth["delta1"], "grid": seg["grid"]}


def probe_both(encoder, args, seed: int) -> dict:
    return {scene: probe(encoder, args.probe_dirs[scene], args, seed) for scene in ("B", "A")}


def held_out_patches(encoder, data: Path):
    """Patch tokens of every held-out still of a probe folder (both splits), as the probes see them."""
    from vidistill.eval.datasets import dense_split
    from vidistill.eval.features import read_rgb

    images = [p for split in ("training", "validation") for p in dense_split(data, split).images]
    return encoder.extract((read_rgb(p) for p in images), total=len(images), desc="drift features")[1]


def feature_drift(encoder, args) -> dict:
    """Per scene, linear CKA between this encoder's patch tokens and the base's on the held-out
    stills (1 = the same relations between patches as the base; ``drift/patch_cka`` of the
    training log, measured on the export)."""
    from vidistill.train.adaptation import linear_cka

    if not hasattr(args, "base_patches"):  # the base's features, once per invocation
        base = hub_encoder(args.base, args.probe_size, args.device)
        args.base_patches = {scene: held_out_patches(base, d) for scene, d in args.probe_dirs.items()}
    return {scene: linear_cka(held_out_patches(encoder, d), args.base_patches[scene])
            for scene, d in args.probe_dirs.items()}


# ---- one row, one seed ----------------------------------------------------------------------


def train_command(row: str, seed: int, args, run_dir: Path) -> list[str]:
    spec = ROWS[row]
    cmd = ["vidistill", "train", "--output", str(run_dir),
           "--max-steps", str(args.steps), "--batch-size", str(args.batch), "--seed", str(seed),
           "--config", str(args.config), "--set", "train.progress=false"]
    for video in args.videos_b:
        cmd += ["--video", video]
    if spec["init"]:
        cmd += ["--preset", args.adapt_preset, "--init", str(args.base)]
    else:
        cmd += ["--preset", args.scratch_preset]
    for a in spec["args"]:
        cmd += gram_args() if a == "gram" else [a]
    for item in args.set:
        cmd += ["--set", item]
    return cmd


def vidistill(argv: list[str]) -> None:
    """The ``vidistill`` command, run in this process (the same code path as the shell command,
    without a torch import per call)."""
    from vidistill.cli import main as cli

    rc = cli(argv)
    if rc:
        raise SystemExit(f"vidistill {' '.join(argv)}: exit code {rc}")


def run_row(row: str, seed: int, args) -> dict:
    from vidistill.runtime import load_encoder

    slug = f"{SLUGS[row]}_s{seed}"
    path = args.output / "results" / f"{slug}.json"
    spec = ROWS[row]
    export = args.output / "runs" / slug / "export"
    if path.is_file() and not args.force_probe:
        log.info("%s: done before (%s)", slug, path)
        result = json.loads(path.read_text())
        if spec["kind"] == "train" and "patch_cka" not in result and export.is_dir():  # probed before CKA
            result["patch_cka"] = feature_drift(load_encoder(export, image_size=args.probe_size or None,
                                                             device=args.device), args)
            path.write_text(json.dumps(result, indent=2) + "\n")
        return result
    result: dict = {"row": row, "seed": seed}
    t0 = time.perf_counter()
    if spec["kind"] == "random":
        from vidistill.config import build_config, parse_set
        from vidistill.train.checkpoint import write_random_init_checkpoint

        ckpt = args.output / "runs" / slug / "checkpoint.pt"
        if not ckpt.is_file():
            cfg = build_config(args.scratch_preset, args.config, overrides=parse_set(args.set))
            write_random_init_checkpoint(cfg, ckpt, seed=seed)
        result["teacher"] = probe_both(load_encoder(ckpt, image_size=args.probe_size or None, device=args.device), args, seed)
    elif spec["kind"] == "base":
        result["teacher"] = probe_both(hub_encoder(args.base, args.probe_size, args.device), args, seed)
    else:
        run_dir = args.output / "runs" / slug
        cmd = train_command(row, seed, args, run_dir)
        result["command"] = " ".join(cmd)
        if export.is_dir():  # trained and exported before (a --force-probe rerun): probe it again
            previous = json.loads(path.read_text()) if path.is_file() else {}
            if "seconds_train" in previous:
                result["seconds_train"] = previous["seconds_train"]
        else:
            log.info("%s: %s", slug, result["command"])
            vidistill(cmd[1:])
            t_train = time.perf_counter()
            vidistill(["export", str(run_dir), "--output", str(export), "--no-onnx"])
            result["seconds_train"] = t_train - t0
        teacher = load_encoder(export, image_size=args.probe_size or None, device=args.device)
        result["teacher"] = probe_both(teacher, args, seed)
        result["patch_cka"] = feature_drift(teacher, args)
        if args.probe_student:
            result["student"] = probe_both(load_encoder(run_dir, image_size=args.probe_size or None, device=args.device, branch="student"),
                                           args, seed)
        if spec["init"]:
            from safetensors.torch import load_file

            result["weight_drift"] = weight_drift(run_dir / "checkpoint.pt", load_file(str(args.base / "model.safetensors")))
        from benchmarks.sim_robot.table1 import collapse_summary

        result["collapse"] = collapse_summary(run_dir)
    result["seconds"] = time.perf_counter() - t0
    t = result["teacher"]
    log.info("%s: B mIoU %.1f  A mIoU %.1f  B depth RMSE %.3f", slug, t["B"]["miou"], t["A"]["miou"],
             t["B"]["depth_rmse"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return result



# ---- the table ------------------------------------------------------------------------------

COLUMNS = (  # (scene, metric, title, format)
    ("B", "miou", "B mIoU", "{:.1f}"),
    ("B", "depth_rmse", "B depth RMSE (m)", "{:.3f}"),
    ("A", "miou", "A mIoU (forgetting)", "{:.1f}"),
    ("A", "depth_rmse", "A depth RMSE (m)", "{:.3f}"),
)


def aggregate(results: list[dict], branch: str = "teacher") -> dict:
    """Per row: mean ± sample std over seeds of every column, and the paired (same seed and probe
    seed) difference from the base as is."""
    base = {r["seed"]: r["teacher"] for r in results if r["row"] == "base (as is)"}
    table: dict = {}
    for row in ROWS:
        runs = [r for r in results if r["row"] == row and (branch in r or ROWS[row]["kind"] != "train")]
        if not runs:
            continue
        probes = [r.get(branch, r["teacher"]) for r in runs]
        entry: dict = {"seeds": [r["seed"] for r in runs]}
        for scene, key, *_ in COLUMNS:
            entry[f"{scene}_{key}"] = stats([p[scene][key] for p in probes])
            entry[f"{scene}_{key}_vs_base"] = stats([p[scene][key] - base[r["seed"]][scene][key]
                                                     for p, r in zip(probes, runs, strict=True) if r["seed"] in base])
        entry["drift"] = stats([r.get("weight_drift", {}).get(branch) for r in runs])
        for scene in ("B", "A"):  # the exported teacher's patch features vs the base's
            entry[f"{scene}_patch_cka"] = stats([r.get("patch_cka", {}).get(scene) for r in runs
                                                  if branch == "teacher"])
        entry["collapsed"] = sum(bool(r.get("collapse", {}).get("collapsed")) for r in runs)
        table[row] = entry
    return table


def format_table(table: dict, markdown: bool = False, branch: str = "teacher") -> str:
    head = ["Row", *(c[2] for c in COLUMNS), "Δ B mIoU", "Δ A mIoU", f"{branch} moved", "drift: patch CKA B / A",
            "collapsed"]
    lines = []
    for row, e in table.items():
        cells = [row, *(mean_std_cell(e[f"{s}_{k}"], f) for s, k, _, f in COLUMNS)]
        for s in ("B", "A"):
            cells.append("–" if row == "base (as is)" else mean_std_cell(e[f"{s}_miou_vs_base"], "{:.1f}", signed=True))
        cells.append("–" if e["drift"]["mean"] is None else f"{100 * e['drift']['mean']:.3f}%")
        cka = [e[f"{s}_patch_cka"]["mean"] for s in ("B", "A")]
        cells.append("–" if None in cka else " / ".join(f"{v:.4f}" for v in cka))
        cells.append(f"{e['collapsed']}/{len(e['seeds'])}" if ROWS[row]["kind"] == "train" else "–")
        lines.append(cells)
    return render_table(head, lines, markdown)


# ---- main -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", type=Path, required=True, help="benchmark folder (data/, base/, runs/, results/)")
    ap.add_argument("--quick", action="store_true", help="a tiny render and a few steps: a smoke run")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="adaptation seeds (default 0 1 2)")
    ap.add_argument("--steps", type=int, default=None, help=f"adaptation steps per row (default {FULL['steps']})")
    ap.add_argument("--batch", type=int, default=None, help=f"clips per step (default {FULL['batch']})")
    ap.add_argument("--base-steps", type=int, default=None, help="supervised steps of the base (default 200)")
    ap.add_argument("--adapt-preset", default="adapt-cpu", help="preset of the rows that start from the base")
    ap.add_argument("--scratch-preset", default="cpu-tiny", help="preset of the from-scratch row")
    ap.add_argument("--config", type=Path, default=SETTINGS, help="config file over the preset, every trained row")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override, every row")
    ap.add_argument("--rows", nargs="+", default=None, choices=list(SLUGS.values()), help="only these rows")
    ap.add_argument("--probe-iters", type=int, default=None)
    ap.add_argument("--probe-size", type=int, default=None, help="probe input size (default 192: a 12x12 grid)")
    ap.add_argument("--label-size", type=int, default=None, help="probe training target size (default 48)")
    ap.add_argument("--no-probe-student", dest="probe_student", action="store_false",
                    help="skip the student probes (a diagnostic)")
    ap.add_argument("--force-probe", action="store_true",
                    help="probe rows that have results again (finished runs and their exports are reused)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads here and in every `vidistill train` (default 1: on a CPU shared with other "
                         "work, 2 threads measured 6x slower per step than 1)")
    ap.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    fill_sizes(args, QUICK if args.quick else FULL)
    if args.quick:
        args.set = QUICK_SET + args.set
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    import torch

    from vidistill.config import build_config, parse_set

    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # inherited by every `vidistill train`
    args.train_size = build_config(args.scratch_preset, args.config, overrides=parse_set(args.set)).data.global_size
    t0 = time.perf_counter()
    args.output.mkdir(parents=True, exist_ok=True)
    data = args.output / "data"
    ensure_scene(data / "scene_a", "a", args)
    manifest_b = ensure_scene(data / "scene_b", "b", args)
    args.videos_b = [str(data / "scene_b" / v) for v in manifest_b["videos"]]
    args.probe_dirs = {"A": data / "scene_a" / "probe", "B": data / "scene_b" / "probe"}
    args.base = ensure_base(args, data / "scene_a")
    rows = [r for r in ROWS if args.rows is None or SLUGS[r] in args.rows]
    if "base (as is)" not in rows:
        rows.insert(0, "base (as is)")  # every Δ column is paired with it
    results = [run_row(row, seed, args) for seed in args.seeds for row in rows]
    table = aggregate(results)
    student = aggregate(results, "student") if any("student" in r for r in results) else {}
    base_record = json.loads((args.base / "train.json").read_text()) if (args.base / "train.json").is_file() else {}
    report = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                     if k not in ("probe_dirs", "videos_b", "base_patches")},
        "base": {k: v for k, v in base_record.items() if k != "curve"},
        "table": table, "student_table": student, "runs": results,
        "seconds_this_invocation": time.perf_counter() - t0,
        "note": "teacher = the exported encoder (what ships); mIoU in percent, RMSE in metres; ± is the sample std "
                "over seeds; Δ is paired with the base as is (same seed); probes fit on held-out stills "
                "(probe/training) and score on other held-out episodes (probe/validation) of each scene",
    }
    (args.output / "adapt.json").write_text(json.dumps(report, indent=2) + "\n")
    print(format_table(table, args.markdown))
    print(f"\n(mean ± std over seeds {args.seeds}; {args.steps} steps x batch {args.batch} on scene B; "
          f"probes at {args.probe_size} px; JSON: {args.output / 'adapt.json'})")
    if student:
        print("\nDiagnostic: the same probes on each trained run's STUDENT backbone")
        print(format_table(student, args.markdown, branch="student"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
