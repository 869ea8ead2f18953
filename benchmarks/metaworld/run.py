"""Meta-World behaviour cloning through the shipped chain (issue 18, section 2).

Stages, each reused when its output exists (rerun the same command to resume):

1. ``data/``: ``record.py`` writes the robot log, demos, held-out and OOD splits as LeRobot v3.0
   datasets (``vidistill info data/demos`` reads them).
2. ``encoders/<row>_s<seed>/``: every row gets the same training compute (steps x clips x views,
   ``vidistill train --video data/robot_log``), then ``vidistill export`` (ONNX). Rows: random
   init (an untrained checkpoint, exported); vidistill from scratch (``--preset cpu-tiny``, the
   method); DINO on frames from scratch (``--objective dino``); with ``--base PATH``: the base as
   is and the base adapted (``--preset adapt --init PATH``).
3. ``features/``: the export's [CLS] (``--features pooled``: its mean patch token, what the dense
   next-frame loss trains) on every demo frame, decoded from the dataset's AV1 video through
   vidistill's own LeRobot reader (cached per encoder and feature kind).
4. ``bc/``: one MLP policy per encoder, seed and task (``bc.py``: 3 x 256, 3-frame history).
5. ``rollouts/``: the policy on the real Meta-World env, seeing the ONNX export through
   ``FeatureObservationWrapper`` (pixels from a small offscreen renderer, encoded live), from
   new random starts; the same on the OOD variations (other light, table colour, camera pose).
6. ``eval_actions/``: ``vidistill eval actions`` (all exports) on the held-out and OOD splits,
   when the installed vidistill has it.

Nothing here is chosen by looking at held-out or rollout results.

    python -m benchmarks.metaworld.run --output bench/metaworld              # the CPU size (see README)
    python -m benchmarks.metaworld.run --output /tmp/mw --quick              # a smoke run
    python -m benchmarks.metaworld.run --output bench/mw-gpu --gpu           # ViT-S/224 on a GPU
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import fill_sizes, mean_ci, render_table
from benchmarks.metaworld.bc import BCPolicy, BCSettings, history_inputs, train_bc
from benchmarks.metaworld.record import CAMERA_KEY, SPLITS, RecordSettings

log = logging.getLogger("metaworld.run")

ROWS: dict[str, dict] = {  # slug -> how the encoder is made
    "random": {"title": "random init", "kind": "random"},
    "vidistill": {"title": "vidistill (scratch)", "kind": "train", "args": []},
    "dino": {"title": "DINO frames (scratch)", "kind": "train", "args": ["--objective", "dino"]},
    "base": {"title": "base (as is)", "kind": "base"},
    "adapted": {"title": "base + vidistill", "kind": "train", "args": [], "init": True},
}

# Sizes. CPU: what 2 shared cores finish in about an hour; GPU: one prepared script of <= 10 min.
CPU = dict(tasks=["button-press-topdown", "drawer-open", "hammer"], size=96, horizon=110, log_episodes=4,
           demo_episodes=25, heldout_episodes=4, ood_episodes=3, seeds=[0, 1, 2], steps=400, batch=8,
           preset="cpu-tiny", rollouts=10, ood_rollouts=3, bc_steps=1500)
QUICK = dict(tasks=["button-press-topdown"], size=48, horizon=80, log_episodes=1, demo_episodes=2,
             heldout_episodes=2, ood_episodes=2, seeds=[0], steps=2, batch=2, preset="cpu-tiny", rollouts=2,
             ood_rollouts=1, bc_steps=50)
# GPU: sized (not run) for one seed of 3 rows in one <= 10 min script (gpu.sh); more seeds: --seeds.
GPU = dict(tasks=["button-press-topdown", "drawer-open", "hammer"], size=224, horizon=150, log_episodes=20,
           demo_episodes=25, heldout_episodes=6, ood_episodes=3, seeds=[0], steps=2000, batch=32,
           preset="gpu", rollouts=10, ood_rollouts=4, bc_steps=3000)
QUICK_SET = ["model.out_dim=256", "model.head_hidden_dim=64", "model.head_bottleneck_dim=32", "data.local_size=16", "data.num_local=2", "data.frame_stride=4"]


def vidistill(argv: list[str]) -> None:
    """The ``vidistill`` command in this process (one torch import; the shell command's code path)."""
    from vidistill.cli import main as cli

    rc = cli(argv)
    if rc:
        raise SystemExit(f"vidistill {' '.join(argv)}: exit code {rc}")


def timed(record: dict, stage: str, seconds: float) -> None:
    record.setdefault("seconds", {})
    record["seconds"][stage] = record["seconds"].get(stage, 0.0) + seconds


def record_data(data: Path, settings: RecordSettings, args) -> dict:
    """record.py in a child process: MuJoCo's GL state never shares a process with the exporter."""
    if not all((data / split / "record.json").is_file() for split in SPLITS):
        cmd = [sys.executable, "-m", "benchmarks.metaworld.record", "--output", str(data), "--tasks", *settings.tasks]
        for key in ("size", "horizon", "log_episodes", "demo_episodes", "heldout_episodes", "ood_episodes"):
            cmd += [f"--{key.replace('_', '-')}", str(getattr(settings, key))]
        subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
    return {split: json.loads((data / split / "record.json").read_text()) for split in SPLITS}


# ---- encoders -------------------------------------------------------------------------------


def ensure_encoder(slug: str, seed: int, args, times: dict) -> Path:
    """The row's ONNX export folder (trained and exported once)."""
    spec = ROWS[slug]
    folder = args.output / "encoders" / f"{slug}_s{seed}"
    export = folder / "export"
    if (export / "encoder.onnx").is_file():
        return export
    t0 = time.perf_counter()
    if spec["kind"] == "base":
        vidistill(["export", str(args.base), "--output", str(export)])
        timed(times, "export", time.perf_counter() - t0)
        return export
    if spec["kind"] == "random":
        from vidistill.config import build_config, parse_set
        from vidistill.train.checkpoint import write_random_init_checkpoint

        cfg = build_config(args.preset, None, overrides=parse_set(args.set))
        source = write_random_init_checkpoint(cfg, folder / "checkpoint.pt", seed=seed)
    else:
        cmd = ["train", "--video", str(args.output / "data" / "robot_log"), "--output", str(folder),
               "--max-steps", str(args.steps), "--batch-size", str(args.batch), "--seed", str(seed),
               "--set", "train.progress=false", *spec["args"]]
        # An adapted row takes `--init`'s own default preset (adapt-cpu without CUDA, adapt with it).
        cmd += ["--init", str(args.base)] if spec.get("init") else ["--preset", args.preset]
        for item in args.set:
            cmd += ["--set", item]
        log.info("%s_s%d: vidistill %s", slug, seed, " ".join(cmd))
        vidistill(cmd)
        timed(times, "train", time.perf_counter() - t0)
        source = folder
    t1 = time.perf_counter()
    vidistill(["export", str(source), "--output", str(export)])
    timed(times, "export", time.perf_counter() - t1)
    return export


# ---- features and BC ------------------------------------------------------------------------


def read_split(root: Path) -> dict:
    """Frames per episode (decoded by vidistill's LeRobot reader) with the parquet's targets."""
    import numpy as np
    import pyarrow.parquet as pq

    from vidistill.data.sources import discover_sources

    table = pq.read_table(root / "data/chunk-000/file-000.parquet").to_pydict()
    episodes = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pydict()
    task_of = {e: t[0] for e, t in zip(episodes["episode_index"], episodes["tasks"], strict=True)}
    sources = {int(s.episode): s for s in discover_sources([root], cameras=[CAMERA_KEY])}
    ep = np.asarray(table["episode_index"])
    frames = []
    for e in sorted(sources):
        src = sources[e]
        n = int((ep == e).sum())
        if len(src) != n:
            raise RuntimeError(f"{root}: episode {e} has {len(src)} frames in the video, {n} rows in the parquet")
        frames.append(np.stack(src.read_many(range(n))))
    return {"frames": np.concatenate(frames), "episode": ep, "task": [task_of[e] for e in ep],
            "action": np.asarray(table["action"], np.float32), "state": np.asarray(table["observation.state"], np.float32)}


def feature_tag(args) -> str:
    """The suffix of files that depend on what the policy reads: none for [CLS] (results made
    before ``--features`` resume), ``_pooled`` for the mean patch token."""
    return "" if args.features == "cls" else f"_{args.features}"


def policy_name(export: Path, args) -> str:
    """One encoder's policy files: features, BC weights, rollouts."""
    return export.parent.name + feature_tag(args)


def cached_features(export: Path, split: str, args, times: dict):
    import numpy as np

    path = args.output / "features" / f"{policy_name(export, args)}_{split}.npy"
    if path.is_file():
        return np.load(path)
    from vidistill.runtime import load_encoder

    t0 = time.perf_counter()
    frames = args.splits[split]["frames"]
    encoder = load_encoder(export, backend=args.backend)
    feats = np.concatenate([encoder.encode(frames[i:i + 64]).select(args.features) for i in range(0, len(frames), 64)])
    encoder.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, feats.astype(np.float32))
    timed(times, "features", time.perf_counter() - t0)
    return feats


def ensure_policy(export: Path, seed: int, task: str, args, times: dict) -> BCPolicy:
    import numpy as np
    import torch

    path = args.output / "bc" / f"{policy_name(export, args)}_{task}.pt"
    if path.is_file():
        return BCPolicy.from_state(torch.load(path, weights_only=False))
    demos = args.splits["demos"]
    feats = cached_features(export, "demos", args, times)
    t0 = time.perf_counter()
    mask = np.array([t == task for t in demos["task"]])
    inputs = history_inputs(feats[mask], demos["state"][mask], demos["episode"][mask])
    policy, record = train_bc(inputs, demos["action"][mask], BCSettings(steps=args.bc_steps), seed)
    log.info("%s %s: BC loss %.4f -> %.4f on %d frames", policy_name(export, args), task, record["first_loss"],
             record["final_loss"], len(inputs))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({**policy.state_dict(), "record": record}, path)
    timed(times, "bc", time.perf_counter() - t0)
    return policy


def rollouts(export: Path, jobs: list[tuple[str, str, int]], args, times: dict) -> list[dict]:
    """(task, variation, n) rollouts of the encoder's policies, in a child process (rollout.py)."""
    todo, out = [], []
    name = policy_name(export, args)
    for task, variation, n in jobs:
        path = args.output / "rollouts" / f"{name}_{task}_{variation}.json"
        out.append(path)
        if not path.is_file():
            todo.append({"export": str(export), "policy": str(args.output / "bc" / f"{name}_{task}.pt"),
                         "features": args.features, "task": task, "task_index": args.tasks.index(task), "variation": variation, "n": n,
                         "size": args.size, "horizon": args.horizon, "backend": args.backend, "output": str(path)})
    if todo:
        t0 = time.perf_counter()
        spec = args.output / "rollouts" / f"{name}.jobs.json"
        spec.parent.mkdir(parents=True, exist_ok=True)
        spec.write_text(json.dumps(todo, indent=2))
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        subprocess.run([sys.executable, "-m", "benchmarks.metaworld.rollout", str(spec)], check=True, env=env)
        timed(times, "rollouts", time.perf_counter() - t0)
    return [json.loads(p.read_text()) for p in out]


# ---- eval actions ---------------------------------------------------------------------------


def eval_actions(exports: list[Path], split: str, args, times: dict) -> dict | None:
    path = args.output / "eval_actions" / f"{split}.json"
    if path.is_file():
        cached = json.loads(path.read_text())
        # A run over other seeds or rows (a parallel lane) wrote it for other exports: redo it.
        judged = sorted(r["encoder"] for r in cached.get("rows", []) if r.get("encoder") != "random init")
        if judged == sorted(map(str, exports)):
            return cached
    import importlib.util

    if importlib.util.find_spec("vidistill.eval.actions") is None:  # `vidistill eval actions` (issue 18 section 1)
        log.warning("this vidistill has no `eval actions`: skipped")
        return None
    t0 = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    vidistill(["eval", "actions", *map(str, exports), "--data", str(args.output / "data" / split), "--json", str(path),
               "--target", "action", "--target", "observation.state", "--backend", args.backend])
    timed(times, f"eval actions ({split})", time.perf_counter() - t0)
    return json.loads(path.read_text())


# ---- the table ------------------------------------------------------------------------------

def summarise(results: list[dict], rows: list[str]) -> dict:
    table = {}
    for slug in rows:
        cells = [r for r in results if r["row"] == slug]
        entry = {"title": ROWS[slug]["title"]}
        entry["success"] = mean_ci([100 * c["success_rate"] for c in cells if c["variation"] == "none"])
        entry["ood_success"] = mean_ci([100 * c["success_rate"] for c in cells if c["variation"] != "none"])
        table[slug] = entry
    return table


def _cell(m: dict) -> str:  # a mean_ci: ± its 95% interval
    if m["mean"] is None:
        return "–"
    return f"{m['mean']:.0f}" if m["ci95"] is None else f"{m['mean']:.0f} ± {m['ci95']:.0f}"


def format_table(table: dict, actions: dict, markdown: bool = False) -> str:
    head = ["Encoder", "BC success % (tasks x seeds)", "OOD success %"]
    r2_cols = [s for s in ("heldout", "ood") if actions.get(s)]
    head += [f"action R² ({s})" for s in r2_cols]
    lines = []
    for slug, e in table.items():
        cells = [e["title"], _cell(e["success"]), _cell(e["ood_success"])]
        for s in r2_cols:
            cells.append(actions_r2(actions[s], slug))
        lines.append(cells)
    return render_table(head, lines, markdown)


def actions_r2(report: dict, slug: str, target: str = "action") -> str:
    """The row's action R² in an ``eval actions --json`` report, averaged over its seeds' exports."""
    vals = [r["targets"][target]["r2"] for r in report.get("rows", [])
            if f"/{slug}_s" in r.get("source", "") and isinstance(r["targets"].get(target, {}).get("r2"), (int, float))]
    return f"{statistics.fmean(vals):.3f}" if vals else "–"


def report_path(args) -> Path:
    return args.output / f"metaworld{feature_tag(args)}.json"


# ---- main -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", type=Path, required=True, help="benchmark folder (data/, encoders/, ...)")
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a smoke run: 1 task, a few frames, 2 rollouts")
    size.add_argument("--gpu", action="store_true", help="ViT-S/224, thousands of steps (a lent GPU, <= 10 min)")
    ap.add_argument("--tasks", nargs="+", default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=None)
    ap.add_argument("--steps", type=int, default=None, help="training steps of every trained row")
    ap.add_argument("--batch", type=int, default=None, help="clips per step")
    ap.add_argument("--rollouts", type=int, default=None, help="rollouts per task, encoder and seed")
    ap.add_argument("--ood-rollouts", type=int, default=None, help="rollouts per task, encoder, seed and variation")
    ap.add_argument("--rows", nargs="+", default=None, choices=list(ROWS), help="default: random vidistill dino "
                    "(+ base adapted with --base)")
    ap.add_argument("--base", type=Path, default=None, help="a base encoder (any --init artefact) for the "
                    "'base (as is)' and 'base + vidistill' rows")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override, every row")
    ap.add_argument("--features", choices=("cls", "pooled"), default="cls",
                    help="what the BC policy reads: the [CLS] token (CortexBench's usual), or the mean patch "
                         "token (the dense branch); encoders are shared, policies and rollouts kept apart")
    ap.add_argument("--threads", type=int, default=1, help="torch / ONNX Runtime threads (default 1: shared CPU)")
    ap.add_argument("--backend", default=None, help="runtime backend of features and rollouts (default: onnx "
                    "on CPU, auto with --gpu: TensorRT > ORT CUDA > ORT CPU > torch)")
    ap.add_argument("--markdown", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    fill_sizes(args, QUICK if args.quick else GPU if args.gpu else CPU)
    if args.quick:
        args.set = QUICK_SET + args.set
    args.backend = args.backend or ("auto" if args.gpu else "onnx")
    args.set = [f"data.global_size={args.size}", *args.set]  # encoders take the rendered frames as they are
    rows = args.rows or (["random", "vidistill", "dino"] + (["base", "adapted"] if args.base else []))
    if any(ROWS[r]["kind"] == "base" or ROWS[r].get("init") for r in rows) and args.base is None:
        raise SystemExit("rows base/adapted need --base PATH")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    if not args.gpu:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        import torch

        torch.set_num_threads(args.threads)
    args.output.mkdir(parents=True, exist_ok=True)
    times: dict = {}
    t0 = time.perf_counter()
    settings = RecordSettings(tasks=args.tasks, size=args.size, horizon=args.horizon, log_episodes=args.log_episodes,
                              demo_episodes=args.demo_episodes, heldout_episodes=args.heldout_episodes,
                              ood_episodes=args.ood_episodes)
    recorded = record_data(args.output / "data", settings, args)
    times["seconds"] = {"record (this invocation)": time.perf_counter() - t0}
    recorded_seconds = {k: v["seconds"] for k, v in recorded.items()}
    args.splits = {"demos": read_split(args.output / "data" / "demos")}

    from benchmarks.metaworld.mw_env import OOD_VARIATIONS

    results, exports = [], []

    def write_report(actions: dict) -> dict:
        table = summarise(results, rows)
        report = {
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "splits"},
            "rows": rows, "seeds_done": sorted({r["seed"] for r in results}), "table": table, "eval_actions": actions,
            "rollouts": results, "seconds_recording": recorded_seconds, "seconds_this_invocation": times["seconds"],
            "total_seconds_this_invocation": time.perf_counter() - t0,
            "note": "success in percent: mean ± 95% t-interval half-width over (seed, task) cells; OOD over (seed, "
                    "task, variation) cells; the same rollout starts for every encoder; action R²: `vidistill eval "
                    "actions` ridge readout on frozen [CLS] + mean patch, whole episodes held out",
        }
        report_path(args).write_text(json.dumps(report, indent=2) + "\n")
        return table

    for seed in args.seeds:
        for slug in rows:
            export = ensure_encoder(slug, seed, args, times)
            exports.append(export)
            for task in args.tasks:
                ensure_policy(export, seed, task, args, times)
            jobs = [(task, v, args.rollouts if v == "none" else args.ood_rollouts)
                    for task in args.tasks for v in ("none", *OOD_VARIATIONS)]
            for r in rollouts(export, jobs, args, times):
                results.append({"row": slug, "seed": seed, **r})
                if r["variation"] == "none":
                    log.info("%s_s%d %s: success %.0f%%", slug, seed, r["task"], 100 * r["success_rate"])
        write_report({})  # a partial table after each seed
    actions = {split: eval_actions(exports, split, args, times) for split in ("heldout", "ood")}
    table = write_report(actions)
    print(format_table(table, actions, args.markdown))
    print(f"\n(tasks {args.tasks}; seeds {args.seeds}; {args.steps} steps x batch {args.batch}; "
          f"{args.rollouts} rollouts per task x seed, {args.ood_rollouts} per OOD variation; policy on "
          f"{args.features}; JSON: {report_path(args)})")
    print("time per stage (this invocation): " + ", ".join(f"{k} {v:.0f} s" for k, v in times["seconds"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
