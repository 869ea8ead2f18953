"""Train on your own robot video: a folder of episodes, a LeRobot dataset, a ROS bag, HDF5 episodes.

    python examples/train_own_video.py /data/robot_logs --steps 2000
    python examples/train_own_video.py /data/my_lerobot_dataset --camera observation.images.top
    python examples/train_own_video.py                     # the sample log in examples/robot_logs

`vidistill info PATH` shows first what a path holds (episodes, cameras, frames, codec).

The same as `vidistill train --video PATH`, from Python: a config is a preset plus overrides
(dotted keys), and rerunning with the same output folder resumes.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from vidistill.config import build_config
from vidistill.train import train

SAMPLE = Path(__file__).resolve().parent / "robot_logs"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("video", nargs="?", default=str(SAMPLE),
                   help="video, frame folder, folder of episodes, LeRobot dataset, ROS bag or HDF5 file")
    p.add_argument("--camera", action="append", default=[], help="log camera to train on (repeatable; default: all)")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--preset", default=None, help="cpu-tiny | gpu | paper (default: gpu if CUDA else cpu-tiny)")
    p.add_argument("--output", default="runs/own_video")
    p.add_argument("--batch-size", type=int)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    overrides = {"data.videos": [args.video], "data.cameras": args.camera, "train.output": args.output,
                 "train.max_steps": args.steps}
    if args.batch_size:
        overrides["optim.batch_size"] = args.batch_size
    cfg = build_config(args.preset, overrides=overrides)
    run_dir = train(cfg)
    print(f"trained {cfg.model.arch} on {args.video}: {run_dir}/checkpoint.pt")
    print(f"next: vidistill export {run_dir}")


if __name__ == "__main__":
    main()
