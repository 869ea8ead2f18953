"""Train Stable-Baselines3 PPO on frozen encoder features of a pixel task.

    pip install "vidistill[sb3]"
    python examples/ppo_sb3_features.py               # a random-init encoder made on the fly
    python examples/ppo_sb3_features.py runs/my_run   # your run / export folder

The task: a 96x96 frame shows a square on the left or the right; the action that names the side
earns 1 (a random policy gets 0.5 per step). ``SB3FeatureVecEnvWrapper`` encodes the 8 sub-envs
in one call per step (and their terminal observations); ``GridFeaturesExtractor`` reads the
(D, h, w) grid, which SB3 would otherwise not treat as an image.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from vidistill.robot_adapters import GridFeaturesExtractor, SB3FeatureVecEnvWrapper
from vidistill.runtime import load_encoder


class SideEnv(gym.Env):
    """Reward 1 when the action (0 = left, 1 = right) names the side of the square."""

    def __init__(self, episode_len: int = 8):
        self.episode_len = episode_len
        self.observation_space = spaces.Box(0, 255, (96, 96, 3), np.uint8)
        self.action_space = spaces.Discrete(2)

    def _frame(self):
        self._side = int(self.np_random.integers(2))
        img = np.full((96, 96, 3), 20, np.uint8)
        x0 = int(self.np_random.integers(0, 24)) + 48 * self._side
        y0 = int(self.np_random.integers(0, 72))
        img[y0 : y0 + 24, x0 : x0 + 24] = (230, 200, 40)
        return img

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self._frame(), {}

    def step(self, action):
        reward = float(int(action) == self._side)
        self._t += 1
        return self._frame(), reward, self._t >= self.episode_len, False, {}


def demo_artefacts(workdir: Path) -> Path:
    """A random-init cpu-tiny run, exported (safetensors + ONNX) as `vidistill export` would."""
    from vidistill.config import build_config
    from vidistill.train.checkpoint import write_random_init_checkpoint

    ckpt = write_random_init_checkpoint(build_config("cpu-tiny"), workdir / "run")
    try:
        from vidistill.export.pipeline import ExportOptions, export_checkpoint

        export_checkpoint(ExportOptions(source=ckpt, parity_batches=(2,)))
    except ImportError:
        pass
    return ckpt.parent


def main(path: Path, steps: int) -> None:
    torch.set_num_threads(1)  # SB3's small policy nets run faster on one thread (the encoder has its own)
    encoder = load_encoder(path)
    print(encoder)
    venv = SB3FeatureVecEnvWrapper(make_vec_env(SideEnv, n_envs=8, seed=0), encoder, output="grid")
    print("PPO observation space:", venv.observation_space)
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=64,
        batch_size=128,
        n_epochs=4,
        learning_rate=1e-3,
        gamma=0.0,  # each reward is immediate
        policy_kwargs=dict(
            features_extractor_class=GridFeaturesExtractor,
            features_extractor_kwargs=dict(features_dim=64, channels=16),
            net_arch=[],
        ),
        seed=0,
        device="cpu",
    )
    eval_env = SB3FeatureVecEnvWrapper(make_vec_env(SideEnv, n_envs=4, seed=123), encoder, output="grid")
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    elapsed = time.perf_counter() - start
    after, _ = evaluate_policy(model, eval_env, n_eval_episodes=16)
    print(f"PPO {steps} steps in {elapsed:.0f} s ({steps / elapsed:.0f} env steps/s)")
    print(f"mean episode reward after training: {after:.2f} (max 8; a random policy gets 4)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, help="run folder, export folder, .onnx, .engine or .pt")
    parser.add_argument("--steps", type=int, default=1536, help="PPO environment steps (default: 1536)")
    args = parser.parse_args()
    if args.path is not None:
        main(args.path, args.steps)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(demo_artefacts(Path(tmp)), args.steps)
