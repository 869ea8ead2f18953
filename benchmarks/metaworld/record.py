"""Record Meta-World episodes with metaworld's scripted experts as LeRobot v3.0 datasets.

Splits (one dataset each, under ``OUTPUT/<split>/``), every task in each:

* ``robot_log``: the unlabeled "robot log" encoders train on: a noisy expert (Gaussian action
  noise) from random starts, run for the whole horizon (it keeps moving after success);
* ``demos``: clean expert demonstrations for behaviour cloning (stopped a few steps after success);
* ``heldout``: more clean episodes, other starts, never trained on (``vidistill eval actions``);
* ``ood``: clean episodes under other light, table colour or camera pose (one per episode, in turn).

Layout (huggingface/lerobot ``src/lerobot/datasets/utils.py``, codebase v3.0): ``meta/info.json``;
``meta/episodes/chunk-000/file-000.parquet`` (per episode: length, data and video file indices,
``from_timestamp``/``to_timestamp``); ``meta/tasks.parquet``; ``meta/stats.json``;
``data/chunk-000/file-000.parquet`` (``action``, ``observation.state``, ``timestamp``,
``frame_index``, ``episode_index``, ``index``, ``task_index``, ``next.success``); the camera
``observation.images.corner`` as one concatenated AV1 mp4 (libsvtav1, yuv420p, g=2, crf 30:
LeRobot's encoder settings) written by PyAV.

    python -m benchmarks.metaworld.record --output bench/metaworld/data --tasks drawer-open button-press-topdown
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.metaworld.mw_env import OOD_VARIATIONS, expert_policy, make_env, success

log = logging.getLogger("metaworld.record")

CAMERA_KEY = "observation.images.corner"
FPS = 80  # Meta-World's control rate: 5 physics steps of 2.5 ms per env step
SPLITS = ("robot_log", "demos", "heldout", "ood")
# Seeds of the random starts: each split draws from its own range, so no start repeats across splits.
SPLIT_SEED = {"robot_log": 10_000, "demos": 20_000, "heldout": 30_000, "ood": 40_000}


@dataclass
class RecordSettings:
    tasks: list[str] = field(default_factory=lambda: ["drawer-open", "button-press-topdown", "hammer"])
    size: int = 96
    horizon: int = 150  # env steps per episode at most (the experts finish these tasks in < 100)
    log_episodes: int = 10  # per task
    demo_episodes: int = 25  # per task (CortexBench: 25 demos)
    heldout_episodes: int = 8
    ood_episodes: int = 6
    log_noise: float = 0.3  # std of the Gaussian action noise of the robot log's expert
    after_success: int = 10  # steps kept after the first success (demos, heldout, ood)

    def episodes(self, split: str) -> int:
        return {"robot_log": self.log_episodes, "demos": self.demo_episodes, "heldout": self.heldout_episodes,
                "ood": self.ood_episodes}[split]


# ======================================================================== LeRobot v3.0 writer
class LeRobotV3Writer:
    """Episodes appended one by one: frames go straight into one AV1 file; tables at ``close``."""

    def __init__(self, root: Path, size: int, fps: int, tasks: list[str]) -> None:
        import av

        self.root, self.size, self.fps, self.tasks = root, size, fps, tasks
        video = root / f"videos/{CAMERA_KEY}/chunk-000/file-000.mp4"
        video.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(video), "w")
        self._stream = self._container.add_stream("libsvtav1", rate=fps)
        self._stream.width = self._stream.height = size
        self._stream.pix_fmt, self._stream.gop_size = "yuv420p", 2
        self._stream.options = {"preset": "12", "crf": "30"}
        self.frames_written = 0
        self.episodes: list[dict] = []
        self.rows: dict[str, list] = {k: [] for k in ("action", "observation.state", "timestamp", "frame_index",
                                                      "episode_index", "index", "task_index", "next.success")}

    def add_episode(self, task: str, frames: list[np.ndarray], actions: np.ndarray, states: np.ndarray,
                    successes: list[bool], extra: dict | None = None) -> None:
        import av

        n = len(frames)
        e = len(self.episodes)
        start_video, start_data = self.frames_written, len(self.rows["index"])
        for image in frames:
            for packet in self._stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                self._container.mux(packet)
        self.frames_written += n
        t = self.tasks.index(task)
        for i in range(n):
            self.rows["action"].append(actions[i].astype(np.float32).tolist())
            self.rows["observation.state"].append(states[i].astype(np.float32).tolist())
            self.rows["timestamp"].append(i / self.fps)
            self.rows["frame_index"].append(i)
            self.rows["episode_index"].append(e)
            self.rows["index"].append(start_data + i)
            self.rows["task_index"].append(t)
            self.rows["next.success"].append(bool(successes[i]))
        self.episodes.append({
            "episode_index": e, "tasks": [task], "length": n, "data/chunk_index": 0, "data/file_index": 0,
            "dataset_from_index": start_data, "dataset_to_index": start_data + n,
            f"videos/{CAMERA_KEY}/chunk_index": 0, f"videos/{CAMERA_KEY}/file_index": 0,
            f"videos/{CAMERA_KEY}/from_timestamp": start_video / self.fps,
            f"videos/{CAMERA_KEY}/to_timestamp": (start_video + n) / self.fps,
            **(extra or {}),
        })

    def close(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        meta = self.root / "meta"
        (meta / "episodes/chunk-000").mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(self.episodes), meta / "episodes/chunk-000/file-000.parquet")
        pq.write_table(pa.table({"task_index": list(range(len(self.tasks))), "task": self.tasks}),
                       meta / "tasks.parquet")
        data = self.root / "data/chunk-000/file-000.parquet"
        data.parent.mkdir(parents=True, exist_ok=True)
        vec = pa.list_(pa.float32())
        pq.write_table(pa.table({
            "action": pa.array(self.rows["action"], vec),
            "observation.state": pa.array(self.rows["observation.state"], vec),
            "timestamp": pa.array(self.rows["timestamp"], pa.float32()),
            **{k: pa.array(self.rows[k], pa.int64()) for k in ("frame_index", "episode_index", "index", "task_index")},
            "next.success": pa.array(self.rows["next.success"], pa.bool_()),
        }), data)
        stats = {}
        for key in ("action", "observation.state"):
            x = np.asarray(self.rows[key], np.float64)
            stats[key] = {"mean": x.mean(0).tolist(), "std": x.std(0).tolist(), "min": x.min(0).tolist(),
                          "max": x.max(0).tolist(), "count": [len(x)]}
        (meta / "stats.json").write_text(json.dumps(stats, indent=2))
        (meta / "info.json").write_text(json.dumps(self.info(), indent=4))

    def info(self) -> dict:
        s = self.size
        vector = lambda names: {"dtype": "float32", "shape": [len(names)], "names": names}  # noqa: E731
        return {
            "codebase_version": "v3.0", "robot_type": "sawyer", "total_episodes": len(self.episodes),
            "total_frames": len(self.rows["index"]), "total_tasks": len(self.tasks), "chunks_size": 1000,
            "data_files_size_in_mb": 100, "video_files_size_in_mb": 500, "fps": self.fps,
            "splits": {"train": f"0:{len(self.episodes)}"},
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
            "features": {
                CAMERA_KEY: {"dtype": "video", "shape": [s, s, 3], "names": ["height", "width", "channels"],
                             "info": {"video.height": s, "video.width": s, "video.codec": "av1",
                                      "video.pix_fmt": "yuv420p", "video.is_depth_map": False,
                                      "video.fps": self.fps, "video.channels": 3, "has_audio": False}},
                "action": vector(["dx", "dy", "dz", "grip"]),
                "observation.state": vector(["hand_x", "hand_y", "hand_z", "gripper"]),
                "timestamp": {"dtype": "float32", "shape": [1], "names": None},
                "frame_index": {"dtype": "int64", "shape": [1], "names": None},
                "episode_index": {"dtype": "int64", "shape": [1], "names": None},
                "index": {"dtype": "int64", "shape": [1], "names": None},
                "task_index": {"dtype": "int64", "shape": [1], "names": None},
                "next.success": {"dtype": "bool", "shape": [1], "names": None},
            },
        }


# ================================================================================= recording
def record_episode(env, policy, seed: int, horizon: int, noise: float, after_success: int | None,
                   rng: np.random.Generator) -> dict:
    """One episode: frame t, state t and the action taken at t (LeRobot's convention)."""
    obs, info = env.reset(seed=seed)
    frames, states, actions, successes = [], [], [], []
    first_success = None
    for t in range(horizon):
        action = np.asarray(policy.get_action(info["full_state"]), np.float64)
        if noise:
            action = action + rng.normal(0.0, noise, action.shape)
        action = np.clip(action, -1.0, 1.0)
        frames.append(obs["pixels"])
        states.append(obs["state"])
        actions.append(action)
        obs, _, terminated, truncated, info = env.step(action)
        successes.append(success(info))
        if successes[-1] and first_success is None:
            first_success = t
        if after_success is not None and first_success is not None and t >= first_success + after_success:
            break
        if terminated or truncated:
            break
    return {"frames": frames, "states": np.asarray(states), "actions": np.asarray(actions), "successes": successes,
            "success": first_success is not None, "first_success": first_success}


def record_split(root: Path, split: str, settings: RecordSettings) -> dict:
    """One split as a LeRobot v3.0 dataset; returns its summary (also in ``root/record.json``)."""
    t0 = time.perf_counter()
    tmp = root.with_name(root.name + ".partial")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    writer = LeRobotV3Writer(tmp, settings.size, FPS, settings.tasks)
    summary: dict = {"split": split, "tasks": {}}
    rng = np.random.default_rng(SPLIT_SEED[split])
    noisy = split == "robot_log"
    for k, task in enumerate(settings.tasks):
        policy = expert_policy(task)
        envs: dict[str, object] = {}
        kept = attempts = 0
        try:
            while kept < settings.episodes(split):
                variation = OOD_VARIATIONS[kept % len(OOD_VARIATIONS)] if split == "ood" else "none"
                if variation not in envs:
                    envs[variation] = make_env(task, settings.size, variation=variation, max_steps=settings.horizon)
                seed = SPLIT_SEED[split] + 1000 * k + attempts
                attempts += 1
                ep = record_episode(envs[variation], policy, seed, settings.horizon,
                                    settings.log_noise if noisy else 0.0,
                                    None if noisy else settings.after_success, rng)
                if not noisy and not ep["success"]:
                    log.warning("%s %s: the expert failed from seed %d within %d steps; recording another start",
                                split, task, seed, settings.horizon)
                    if attempts > 3 * settings.episodes(split):
                        raise RuntimeError(f"{task}: the expert fails too often ({attempts} attempts; "
                                           f"horizon {settings.horizon} steps too short?)")
                    continue
                writer.add_episode(task, ep["frames"], ep["actions"], ep["states"], ep["successes"],
                                   extra={"seed": seed, "variation": variation})
                kept += 1
        finally:
            for env in envs.values():
                env.close()
        lengths = [e["length"] for e in writer.episodes if e["tasks"] == [task]]
        summary["tasks"][task] = {"episodes": kept, "attempts": attempts, "frames": int(sum(lengths))}
        log.info("%s %s: %d episodes, %d frames", split, task, kept, sum(lengths))
    writer.close()
    summary["seconds"] = time.perf_counter() - t0
    summary["settings"] = asdict(settings)
    (tmp / "record.json").write_text(json.dumps(summary, indent=2) + "\n")
    tmp.rename(root)
    return summary


def record_all(output: Path, settings: RecordSettings, splits: tuple[str, ...] = SPLITS) -> dict:
    """Every split not recorded yet (a finished split has its ``record.json``)."""
    out = {}
    for split in splits:
        root = output / split
        if (root / "record.json").is_file():
            out[split] = json.loads((root / "record.json").read_text())
            continue
        log.info("recording %s into %s", split, root)
        out[split] = record_split(root, split, settings)
        log.info("%s: %.0f s", split, out[split]["seconds"])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", type=Path, required=True)
    d = RecordSettings()
    ap.add_argument("--tasks", nargs="+", default=d.tasks)
    for key in ("size", "horizon", "log_episodes", "demo_episodes", "heldout_episodes", "ood_episodes"):
        ap.add_argument(f"--{key.replace('_', '-')}", type=int, default=getattr(d, key))
    ap.add_argument("--log-noise", type=float, default=d.log_noise)
    ap.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    settings = RecordSettings(tasks=args.tasks, size=args.size, horizon=args.horizon, log_episodes=args.log_episodes,
                              demo_episodes=args.demo_episodes, heldout_episodes=args.heldout_episodes,
                              ood_episodes=args.ood_episodes, log_noise=args.log_noise)
    summary = record_all(args.output, settings, tuple(args.splits))
    for split, s in summary.items():
        print(f"{split}: {sum(t['frames'] for t in s['tasks'].values())} frames, {s['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
