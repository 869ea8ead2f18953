"""``VectorFeatureObservationWrapper``: encode every sub-env's image(s) in ONE batched call.

gymnasium's ``VectorizeTransformObservation`` would call the encoder once per sub-env; this
subclasses ``VectorObservationWrapper`` directly and sets both ``single_observation_space`` and
``observation_space`` (gymnasium #1287). Several cameras of a Dict observation go into the same
call (num_envs x cameras images).

Autoreset: with ``NEXT_STEP`` (the gymnasium 1.x default) and ``DISABLED`` the observation of
every step is a real observation of its sub-env (the reset observation arrives the step after
an episode ends), so encoding the batch is all there is to do. With ``SAME_STEP`` the terminal
observations are in ``infos["final_obs"]``: they are encoded too, in one extra batched call, so
bootstrapping code reads features there as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv, VectorObservationWrapper, VectorWrapper
from gymnasium.vector.utils import batch_space

from vidistill.runtime.encoder import Encoder

from .gym_wrapper import resolve_encoder
from .pixel_source import RENDER, PixelSource, encode_groups, feature_space, find_pixel_source, wrapped_space


def _autoreset_mode(env: VectorEnv) -> AutoresetMode | None:
    mode = env.metadata.get("autoreset_mode")
    return AutoresetMode(mode) if mode is not None else None


class VectorFeatureObservationWrapper(VectorObservationWrapper):
    """The vector counterpart of :class:`FeatureObservationWrapper` (same arguments).

    Each ``reset``/``step`` makes one ``encoder.encode`` call on the (num_envs x cameras, H, W, 3)
    batch. Pixels come from the observation (Box image or Dict entries) or, for render-only envs
    made with ``render_mode="rgb_array"``, from the vector env's ``render()`` (not with
    SAME_STEP autoreset, where the terminal frame is gone by the time ``step`` returns).
    """

    def __init__(
        self,
        env: VectorEnv,
        encoder: Encoder | str | Path,
        output: str = "grid",
        pixel_key: str | Sequence[str] | None = None,
        keep_pixels: bool = False,
        features_key: str = "features",
    ) -> None:
        self.autoreset_mode = _autoreset_mode(env)
        if self.autoreset_mode == AutoresetMode.SAME_STEP:
            VectorWrapper.__init__(self, env)  # the parent refuses SAME_STEP; final_obs is handled in step()
        else:
            super().__init__(env)
        self.encoder = resolve_encoder(encoder)
        self.output = output
        self.source: PixelSource = find_pixel_source(
            env.single_observation_space, pixel_key, env.render_mode, keep_pixels, features_key, where="vector environment"
        )
        if self.source.kind == RENDER and self.autoreset_mode == AutoresetMode.SAME_STEP:
            raise ValueError(
                "pixels from render() cannot be used with autoreset_mode=SAME_STEP (the terminal frame is gone "
                "once the sub-env resets): use NEXT_STEP, or put the image in the observation"
            )
        features = feature_space(output, self.encoder.embed_dim, self.encoder.grid_size)
        pixel_space = None
        if keep_pixels and self.source.kind == RENDER:
            pixel_space = self._render_pixel_space()
        elif keep_pixels and not self.source.keys:
            pixel_space = env.single_observation_space
        self.single_observation_space = wrapped_space(self.source, features, pixel_space)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)

    def _render_pixel_space(self) -> Any:
        from gymnasium import spaces

        self.env.reset()
        frames = self.env.render()
        frame = np.asarray(frames[0])
        return spaces.Box(0, 255, shape=frame.shape, dtype=np.uint8)

    def _render_batch(self) -> np.ndarray:
        frames = self.env.render()
        if frames is None:
            raise ValueError("the vector env's render() returned None: make it with render_mode='rgb_array'")
        return np.stack(frames)

    def observations(self, observations: Any) -> Any:
        images = [self._render_batch()] if self.source.kind == RENDER else self.source.images(observations)
        return self.source.assemble(observations, encode_groups(self.encoder, images, self.output), images)

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        observations, rewards, terminations, truncations, infos = self.env.step(actions)
        if self.autoreset_mode == AutoresetMode.SAME_STEP and "final_obs" in infos:
            infos = dict(infos)
            infos["final_obs"] = self._encode_final(infos["final_obs"], infos.get("_final_obs"))
        return self.observations(observations), rewards, terminations, truncations, infos

    def _encode_final(self, final_obs: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        """Encode the terminal observations (an object array, None where no episode ended)."""
        idx = [i for i in range(len(final_obs)) if (mask is None or mask[i]) and final_obs[i] is not None]
        out = np.array(final_obs, dtype=object, copy=True)
        if not idx:
            return out
        per_env = [self.source.images(final_obs[i]) for i in idx]
        cameras = len(per_env[0])
        groups = [np.stack([images[c] for images in per_env]) for c in range(cameras)]
        features = encode_groups(self.encoder, groups, self.output)
        for j, i in enumerate(idx):
            out[i] = self.source.assemble(final_obs[i], [f[j] for f in features], per_env[j])
        return out
