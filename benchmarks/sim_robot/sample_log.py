"""Make ``examples/robot_logs`` a small LeRobot v3.0 dataset: the rendered episodes with the robot's
recorded joint state and commanded action beside every frame.

The sample log's two episodes were rendered by ``render.py`` (``--episodes 2 --frames 240 --size
256 --seed 7 --probe-episodes 1 --probe-frames 4``, see ``examples/robot_logs/README.md``). Each
episode's joint trajectory is a pure function of its seed, so this script rebuilds it with
render.py's own code (the scene is laid out again only to draw the same random numbers; nothing
is rendered) and records, per frame ``i`` at ``t = i / fps``:

* ``observation.state`` (8): the 7 arm joint angles (rad) and the finger opening (m) the frame
  was rendered with;
* ``action`` (8): the joint position target commanded for the next frame (the state at
  ``t + 1 / fps``), what a position-controlled arm is sent.

Layout (LeRobot codebase v3.0, huggingface/lerobot ``src/lerobot/datasets/utils.py``): the
videos, one file per episode, under ``videos/observation.images.front/chunk-000/``
(``file-000.mp4``, ``file-001.mp4``; the rendered mp4s as they are: no re-encode, the frames
training reads stay the same); ``data/chunk-000/file-000.parquet``; ``meta/info.json``,
``meta/episodes/chunk-000/file-000.parquet``, ``meta/tasks.parquet``, ``meta/stats.json``.
``--check`` re-renders a few frames from the rebuilt trajectory and compares them with the video.

    python -m benchmarks.sim_robot.sample_log --videos RENDER/videos --output examples/robot_logs
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from benchmarks.sim_robot import render  # the trajectories' own code

CAMERA = "observation.images.front"
TASK = "move the arm over the table"
SEED, FPS, FRAMES, SIZE = 7, 30, 240, 256
JOINT_NAMES = [f"joint_{k}" for k in range(1, 8)] + ["gripper_opening"]


def trajectories(episodes: int, seed: int = SEED) -> list[render.Trajectory]:
    """Each training episode's trajectory, drawn from the same generator state as render.py."""
    import pybullet as p

    client = p.connect(p.DIRECT)
    try:
        out = []
        for i in range(episodes):
            rng = np.random.default_rng(render.episode_seed(seed, "train", i))
            render.build_scene(p, client, rng)
            out.append(render.Trajectory.random(rng))
        return out
    finally:
        p.disconnect(client)


def joint_state(traj: render.Trajectory, t: float) -> np.ndarray:
    return np.array([*traj.joints(t), traj.gripper(t)], np.float32)


def check_frames(video: Path, episode: int, frames: list[int], seed: int = SEED) -> list[float]:
    """PSNR (dB) of frames re-rendered from the rebuilt trajectory against the video's frames."""
    import pybullet as p

    from vidistill.data.sources import discover_sources

    src = discover_sources([str(video)])[0]
    client = p.connect(p.DIRECT)
    try:
        rng = np.random.default_rng(render.episode_seed(seed, "train", episode))
        scene = render.build_scene(p, client, rng)
        traj = render.Trajectory.random(rng)
        cam = render.Camera(**{**render.TRAIN_CAMERA.__dict__, "phase": float(rng.uniform(0, 2 * np.pi))})
        out = []
        for i, (rgb, _, _) in zip(frames, render.episode_frames(p, scene, traj, cam, [i / FPS for i in frames],
                                                                 src.size[0], labels=False), strict=True):
            mse = float(((rgb.astype(np.float64) - src.read(i)) ** 2).mean())
            out.append(10 * np.log10(255**2 / max(mse, 1e-9)))
        return out
    finally:
        p.disconnect(client)


def _stats(values: np.ndarray) -> dict:
    return {"min": values.min(0).tolist(), "max": values.max(0).tolist(), "mean": values.mean(0).tolist(),
            "std": values.std(0).tolist(), "count": [len(values)]}


def write_dataset(output: Path, videos: list[Path], seed: int = SEED) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vidistill.data.sources import discover_sources

    lengths = [len(discover_sources([str(v)])[0]) for v in videos]
    trajs = trajectories(len(videos), seed)
    state, action = [], []
    for traj, n in zip(trajs, lengths, strict=True):
        state.append(np.stack([joint_state(traj, i / FPS) for i in range(n)]))
        action.append(np.stack([joint_state(traj, (i + 1) / FPS) for i in range(n)]))

    for i, video in enumerate(videos):  # the rendered mp4s become the dataset's video files
        dst = output / f"videos/{CAMERA}/chunk-000/file-{i:03d}.mp4"
        dst.parent.mkdir(parents=True, exist_ok=True)
        if video.resolve() != dst.resolve():
            shutil.copyfile(video, dst)

    n_all = sum(lengths)
    episode_index = np.concatenate([np.full(n, e) for e, n in enumerate(lengths)])
    frame_index = np.concatenate([np.arange(n) for n in lengths])
    floats = lambda a: pa.array(list(np.concatenate(a).astype(np.float32)), pa.list_(pa.float32(), 8))  # noqa: E731
    data = pa.table({
        "observation.state": floats(state),
        "action": floats(action),
        "timestamp": pa.array(frame_index / FPS, pa.float32()),
        "frame_index": pa.array(frame_index, pa.int64()),
        "episode_index": pa.array(episode_index, pa.int64()),
        "index": pa.array(np.arange(n_all), pa.int64()),
        "task_index": pa.array(np.zeros(n_all, np.int64), pa.int64()),
    })
    (output / "data/chunk-000").mkdir(parents=True, exist_ok=True)
    pq.write_table(data, output / "data/chunk-000/file-000.parquet")

    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).tolist()
    episodes = pa.table({
        "episode_index": list(range(len(lengths))), "tasks": [[TASK]] * len(lengths), "length": lengths,
        "data/chunk_index": [0] * len(lengths), "data/file_index": [0] * len(lengths),
        "dataset_from_index": starts, "dataset_to_index": [s + n for s, n in zip(starts, lengths, strict=True)],
        f"videos/{CAMERA}/chunk_index": [0] * len(lengths), f"videos/{CAMERA}/file_index": list(range(len(lengths))),
        f"videos/{CAMERA}/from_timestamp": [0.0] * len(lengths),
        f"videos/{CAMERA}/to_timestamp": [n / FPS for n in lengths],
    })
    (output / "meta/episodes/chunk-000").mkdir(parents=True, exist_ok=True)
    pq.write_table(episodes, output / "meta/episodes/chunk-000/file-000.parquet")
    pq.write_table(pa.table({"task_index": [0], "task": [TASK]}), output / "meta/tasks.parquet")

    h = w = SIZE
    info = {
        "codebase_version": "v3.0", "robot_type": "panda (pybullet, simulated)", "total_episodes": len(lengths),
        "total_frames": n_all, "total_tasks": 1, "chunks_size": 1000, "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 500, "fps": FPS, "splits": {"train": f"0:{len(lengths)}"},
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
        "features": {
            CAMERA: {"dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"],
                     "info": {"video.height": h, "video.width": w, "video.codec": "mpeg4",
                              "video.pix_fmt": "yuv420p", "video.is_depth_map": False, "video.fps": FPS,
                              "video.channels": 3, "has_audio": False}},
            "observation.state": {"dtype": "float32", "shape": [8], "names": JOINT_NAMES},
            "action": {"dtype": "float32", "shape": [8], "names": JOINT_NAMES},
            "timestamp": {"dtype": "float32", "shape": [1], "names": None},
            "frame_index": {"dtype": "int64", "shape": [1], "names": None},
            "episode_index": {"dtype": "int64", "shape": [1], "names": None},
            "index": {"dtype": "int64", "shape": [1], "names": None},
            "task_index": {"dtype": "int64", "shape": [1], "names": None},
        },
    }
    (output / "meta/info.json").write_text(json.dumps(info, indent=4) + "\n")
    stats = {"observation.state": _stats(np.concatenate(state)), "action": _stats(np.concatenate(action))}
    (output / "meta/stats.json").write_text(json.dumps(stats, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=Path, required=True, help="render.py's videos/ folder (episode_NNN.mp4)")
    p.add_argument("--output", type=Path, required=True, help="the LeRobot dataset folder to write")
    p.add_argument("--seed", type=int, default=SEED, help="render.py's --seed (default: 7, the sample log's)")
    p.add_argument("--check", action="store_true", help="re-render frames and compare them with the video")
    args = p.parse_args(argv)
    videos = sorted(args.videos.glob("episode_*.mp4"))
    if not videos:
        p.error(f"{args.videos}: no episode_*.mp4")
    if args.check:
        for e, v in enumerate(videos):
            print(f"{v.name}: PSNR of re-rendered frames 0, 120, 239: "  # noqa: T201
                  + ", ".join(f"{x:.1f} dB" for x in check_frames(v, e, [0, 120, 239], args.seed)))
    write_dataset(args.output, videos, args.seed)
    print(f"wrote {args.output}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
