"""Wrap a gymnasium pixel environment so that its observations are encoder features.

    python examples/wrap_gym_env.py                     # a random-init encoder made on the fly
    python examples/wrap_gym_env.py runs/my_run         # a run folder (uses its export/ if any)
    python examples/wrap_gym_env.py runs/my_run/export  # an export folder, or an .onnx / .engine

Shows: the single-env wrapper (Box and Dict observations, proprioception kept), gymnasium's
``check_env`` on the wrapped env, and the vector wrapper that encodes all sub-envs in one call.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env

from vidistill.robot_adapters import FeatureObservationWrapper, VectorFeatureObservationWrapper
from vidistill.runtime import load_encoder


class ReachEnv(gym.Env):
    """A toy robot camera: a red target somewhere in a 128x128 frame, plus joint positions."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, render_mode=None):
        self.render_mode = render_mode
        self.observation_space = spaces.Dict({
            "pixels": spaces.Box(0, 255, (128, 128, 3), np.uint8),
            "joints": spaces.Box(-1.0, 1.0, (6,), np.float32),
        })
        self.action_space = spaces.Box(-1.0, 1.0, (6,), np.float32)

    def _obs(self):
        img = np.full((128, 128, 3), 40, np.uint8)
        y, x = self._target
        img[y : y + 16, x : x + 16] = (220, 30, 30)
        return {"pixels": img, "joints": self._joints.copy()}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._target = self.np_random.integers(0, 112, size=2)
        self._joints = np.zeros(6, np.float32)
        self._t = 0
        return self._obs(), {}

    def step(self, action):
        self._joints = np.clip(self._joints + 0.1 * np.asarray(action, np.float32), -1, 1).astype(np.float32)
        self._t += 1
        return self._obs(), 0.0, False, self._t >= 20, {}


def demo_artefacts(workdir: Path) -> Path:
    """A random-init cpu-tiny run, exported (safetensors + ONNX) as `vidistill export` would."""
    from vidistill.config import build_config
    from vidistill.train.checkpoint import write_random_init_checkpoint

    ckpt = write_random_init_checkpoint(build_config("cpu-tiny"), workdir / "run")
    try:
        from vidistill.export.pipeline import ExportOptions, export_checkpoint

        export_checkpoint(ExportOptions(source=ckpt, parity_batches=(2,)))
    except ImportError:
        pass  # no export package: the torch backend serves the checkpoint
    return ckpt.parent


def main(path: Path) -> None:
    encoder = load_encoder(path)  # TensorRT > ONNX Runtime CUDA > ONNX Runtime CPU > torch
    print(encoder)
    print(f"contract: {encoder.image_size}px, mean={encoder.mean}, std={encoder.std}, grid={encoder.grid_size}")

    # 1. One env, Dict observation: the image becomes a (D, h, w) grid, the joints pass through.
    env = FeatureObservationWrapper(ReachEnv(), encoder, output="grid")
    print("observation space:", env.observation_space)
    obs, _ = env.reset(seed=0)
    print({k: (v.shape, v.dtype) for k, v in obs.items()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gymnasium notes the infinite feature bounds
        check_env(env)
    print("check_env passed on the wrapped env")

    # 2. Eight envs, one batched encode per step.
    venv = VectorFeatureObservationWrapper(
        gym.vector.SyncVectorEnv([ReachEnv for _ in range(8)]), encoder, output="pooled"
    )
    print("vector: single", venv.single_observation_space["features"], "batched", venv.observation_space["features"])
    obs, _ = venv.reset(seed=0)
    start = time.perf_counter()
    for _ in range(25):  # crosses an episode end (20 steps) and its autoreset
        obs, reward, terminated, truncated, info = venv.step(venv.action_space.sample())
    per_step = (time.perf_counter() - start) / 25
    print(f"vector step with 8 envs: {1e3 * per_step:.1f} ms ({1e3 * per_step / 8:.1f} ms per env), "
          f"features {obs['features'].shape}")
    venv.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, help="run folder, export folder, .onnx, .engine or .pt")
    args = parser.parse_args()
    if args.path is not None:
        main(args.path)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(demo_artefacts(Path(tmp)))
