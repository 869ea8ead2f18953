"""`make demo`: the whole product on a laptop CPU in a few minutes.

1. trains the cpu-tiny preset on the robot log that ships in examples/robot_logs/ (a small
   LeRobot v3.0 dataset: 2 episodes, with the arm's joint state and action beside each frame),
2. exports the teacher backbone (safetensors for timm + ONNX, checked against PyTorch),
3. wraps a gymnasium env with FeatureObservationWrapper backed by the exported ONNX model and
   steps it,
4. draws the learned features (PCA of patch tokens) and the loss curves,
5. asks whether it helps the robot: ``vidistill eval actions`` reads the log's recorded action
   from the export's frozen features, against random init, on the held-out episode.

    python examples/demo.py [--steps 300] [--output runs/demo]
"""

from __future__ import annotations

import argparse
import logging
import shlex
import time
from pathlib import Path

from vidistill.train.cores import prefer_passive_waiting

prefer_passive_waiting()  # before anything loads torch: the demo trains in this process, as `vidistill train`

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ROBOT_LOGS = ROOT / "examples" / "robot_logs"
EPISODE_VIDEO = ROBOT_LOGS / "videos" / "observation.images.front" / "chunk-000" / "file-001.mp4"  # episode 1


class RobotLogReplayEnv(gym.Env):
    """Replays a recorded episode as camera observations (uint8 HWC), a stand-in for a robot
    env: the action does not change what is seen, the wrapper's job is the same."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, video: Path, episode_length: int = 60):
        from vidistill.data.sources import discover_sources

        self._source = discover_sources([str(video)])[0]
        w, h = self._source.size
        self.observation_space = gym.spaces.Box(0, 255, (h, w, 3), np.uint8)
        self.action_space = gym.spaces.Discrete(3)
        self.episode_length = episode_length
        self._t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = int(self.np_random.integers(0, len(self._source) - self.episode_length))
        self._end = self._t + self.episode_length
        return self._source.read(self._t), {}

    def step(self, action):
        self._t += 1
        return self._source.read(self._t), 0.0, False, self._t >= self._end - 1, {}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=300, help="training steps (about 0.6 s each on 2 cores)")
    p.add_argument("--output", default="runs/demo")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    out = Path(args.output)
    t0 = time.time()

    print(f"[1/5] training cpu-tiny on {ROBOT_LOGS.relative_to(ROOT)} for {args.steps} steps")
    from vidistill.config import build_config
    from vidistill.train import train

    cfg = build_config("cpu-tiny", overrides={
        "data.videos": [str(ROBOT_LOGS)], "train.output": str(out), "train.max_steps": args.steps,
    })
    run_dir = train(cfg)

    print("[2/5] exporting the teacher backbone (safetensors + ONNX, parity-checked)")
    from vidistill.export.pipeline import ExportOptions, export_checkpoint

    result = export_checkpoint(ExportOptions(source=run_dir, output=run_dir / "export"))

    print("[3/5] stepping a gymnasium env through FeatureObservationWrapper (ONNX Runtime)")
    from vidistill.robot_adapters import FeatureObservationWrapper
    from vidistill.runtime import load_encoder

    encoder = load_encoder(result.output, backend="onnx")
    env = FeatureObservationWrapper(RobotLogReplayEnv(EPISODE_VIDEO), encoder, output="grid")
    obs, _ = env.reset(seed=0)
    steps, t = 0, time.perf_counter()
    for _ in range(50):
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        steps += 1
        if terminated or truncated:
            obs, _ = env.reset()
    per_step = (time.perf_counter() - t) / steps * 1e3
    print(f"      observation: {obs.dtype} {obs.shape} (D, h, w) in {env.observation_space}; {per_step:.1f} ms/step")

    print("[4/5] drawing the learned features and the loss curves")
    from vidistill.visualize import feature_picture, loss_curves

    picture = feature_picture(str(result.output), str(EPISODE_VIDEO), run_dir / "features.png",
                              frames=6, tile=192, image_size=192)
    curves = loss_curves(str(run_dir), run_dir / "curves.png")

    # The same command a user runs on their own log (every 2nd frame: neighbours at 30 fps are near
    # copies, and the demo stays within a minute of this step on 2 cores).
    report = run_dir / "eval_actions.json"
    command = ["eval", "actions", str(result.output), "--data", str(ROBOT_LOGS), "--stride", "2",
               "--json", str(report), "--device", "cpu"]
    print("[5/5] does it help the robot? vidistill " + shlex.join(command))
    from vidistill.cli import main as vidistill

    if vidistill(command) != 0:
        raise SystemExit("vidistill eval actions failed (see above)")

    run_q, export_q = shlex.quote(str(run_dir)), shlex.quote(str(result.output))  # pasteable
    print(f"""
done in {time.time() - t0:.0f} s. Written:
  run (checkpoint, config, log)  {run_dir}
  export (timm weights, ONNX)    {result.output}
  feature picture (PCA of patch tokens)  {picture}
  loss curves                    {curves}
  action readout vs random init  {report}

next:
  vidistill train --video YOUR_ROBOT_LOGS/                  # train on your own episodes
  vidistill eval actions {export_q} --data YOUR_LEROBOT_DATASET/   # does it help your robot?
  vidistill export {run_q} --trt                        # TensorRT engine (NVIDIA GPU + tensorrt)
  python examples/wrap_gym_env.py {export_q}       # features as observations
  python examples/ppo_sb3_features.py                       # PPO on features (pip install -e '.[sb3]')
  python examples/vla_policy.py {export_q}         # a VLA-style vision tower
  bash examples/train_paper_4gpu.sh VIDEO                   # the paper's 4-GPU run""")


if __name__ == "__main__":
    main()
