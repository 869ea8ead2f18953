"""Stable-Baselines3 integration (optional extra: ``pip install vidistill[sb3]``).

* :class:`SB3FeatureVecEnvWrapper`: a ``VecEnvWrapper`` that encodes all sub-env images in one
  batched call per step, including ``infos[i]["terminal_observation"]`` (SB3 resets on the same
  step, so the terminal observation lives in the info dict; VecNormalize transforms it the same
  way). Current and terminal images go through ONE ``encode`` call.
* :class:`GridFeaturesExtractor`: SB3 treats only uint8 (C, H, W) Boxes as images, so a float
  (D, h, w) feature grid needs its own extractor: 1x1 conv (D -> c), 3x3 conv, linear.
  Pass it as ``policy_kwargs=dict(features_extractor_class=GridFeaturesExtractor)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.preprocessing import get_flattened_obs_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from torch import nn

from vidistill.runtime.encoder import Encoder

from .gym_wrapper import resolve_encoder
from .pixel_source import RENDER, PixelSource, encode_groups, feature_space, find_pixel_source, wrapped_space


class SB3FeatureVecEnvWrapper(VecEnvWrapper):
    """Encoder features as observations of an SB3 ``VecEnv`` (arguments as FeatureObservationWrapper).

    The images must be in the observation (Box, or a Dict entry): for render-only envs, wrap
    each env with ``gymnasium.wrappers.AddRenderObservation`` first.
    """

    def __init__(
        self,
        venv: VecEnv,
        encoder: Encoder | str | Path,
        output: str = "grid",
        pixel_key: str | Sequence[str] | None = None,
        keep_pixels: bool = False,
        features_key: str = "features",
    ) -> None:
        self.encoder = resolve_encoder(encoder)
        self.output = output
        self.source: PixelSource = find_pixel_source(
            venv.observation_space, pixel_key, "rgb_array", keep_pixels, features_key, where="VecEnv"
        )
        if self.source.kind == RENDER:
            raise ValueError(
                f"the VecEnv's observation space {venv.observation_space} has no RGB image (uint8 (H, W, 3)); "
                "wrap each env with gymnasium.wrappers.AddRenderObservation(env) (render_mode='rgb_array') "
                "so the images are in the observations"
            )
        features = feature_space(output, self.encoder.embed_dim, self.encoder.grid_size)
        pixel_space = venv.observation_space if keep_pixels and not self.source.keys else None
        super().__init__(venv, observation_space=wrapped_space(self.source, features, pixel_space))

    def reset(self) -> Any:
        obs = self.venv.reset()
        images = self.source.images(obs)
        return self.source.assemble(obs, encode_groups(self.encoder, images, self.output), images)

    def step_wait(self) -> tuple[Any, np.ndarray, np.ndarray, list[dict]]:
        obs, rewards, dones, infos = self.venv.step_wait()
        images = self.source.images(obs)
        done_idx = [i for i, info in enumerate(infos) if "terminal_observation" in info]
        terminal = [self.source.images(infos[i]["terminal_observation"]) for i in done_idx]
        groups = list(images) + [np.stack([t[c] for t in terminal]) for c in range(len(images))] if terminal else images
        features = encode_groups(self.encoder, groups, self.output)  # current + terminal: ONE call
        cameras = len(images)
        for j, i in enumerate(done_idx):
            feats = [features[cameras + c][j] for c in range(cameras)]
            infos[i]["terminal_observation"] = self.source.assemble(infos[i]["terminal_observation"], feats, terminal[j])
        return self.source.assemble(obs, features[:cameras], images), rewards, dones, infos


class GridFeaturesExtractor(BaseFeaturesExtractor):
    """A small conv + linear head over the (D, h, w) feature grid.

    For a Dict observation, the ``features_key`` grid goes through the conv and the other
    entries (e.g. proprioception) are flattened and concatenated before the linear layer.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        features_dim: int = 256,
        channels: int = 64,
        features_key: str = "features",
    ) -> None:
        super().__init__(observation_space, features_dim)
        if isinstance(observation_space, spaces.Dict):
            grid_space = observation_space[features_key]
            self._extra_keys = [k for k in observation_space.spaces if k != features_key]
            extra_dim = sum(get_flattened_obs_dim(observation_space[k]) for k in self._extra_keys)
        else:
            grid_space, self._extra_keys, extra_dim = observation_space, [], 0
        if not (isinstance(grid_space, spaces.Box) and len(grid_space.shape) == 3):
            raise ValueError(f"GridFeaturesExtractor needs a (D, h, w) Box (output='grid'), got {grid_space}")
        self._key = features_key if isinstance(observation_space, spaces.Dict) else None
        d, h, w = grid_space.shape
        self.conv = nn.Sequential(
            nn.Conv2d(d, channels, kernel_size=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.linear = nn.Sequential(nn.Linear(channels * h * w + extra_dim, features_dim), nn.ReLU())

    def forward(self, observations: Any) -> torch.Tensor:
        if self._key is None:
            return self.linear(self.conv(observations))
        parts = [self.conv(observations[self._key])]
        parts += [observations[k].flatten(1).float() for k in self._extra_keys]
        return self.linear(torch.cat(parts, dim=1))
