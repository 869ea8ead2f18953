"""``FeatureObservationWrapper``: a gymnasium env whose observations are encoder features."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from vidistill.runtime.encoder import Encoder

from .pixel_source import RENDER, PixelSource, encode_groups, feature_space, find_pixel_source, wrapped_space


def resolve_encoder(encoder: Encoder | str | Path) -> Encoder:
    """An :class:`Encoder` as given, or loaded from a path with ``load_encoder(path)``."""
    if isinstance(encoder, Encoder) or all(hasattr(encoder, a) for a in ("encode", "embed_dim", "grid_size")):
        return encoder  # an Encoder, or a duck-typed one (a cache, a spy, a remote client)
    if isinstance(encoder, (str, Path)):
        from vidistill.runtime import load_encoder

        return load_encoder(encoder)
    raise TypeError(f"encoder must be an Encoder or a path to an artefact, got {type(encoder).__name__}")


def render_pixel_space(env: Any) -> spaces.Box:
    """The Box of ``env.render()`` frames (resets the env once, like AddRenderObservation)."""
    env.reset()
    frame = env.render()
    if not isinstance(frame, np.ndarray):
        raise TypeError(f"env.render() must return a numpy array with render_mode='rgb_array', got {type(frame).__name__}")
    return spaces.Box(0, 255, shape=frame.shape, dtype=np.uint8)


class FeatureObservationWrapper(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Replace image observations by frozen-encoder features (one ``encode`` call per step).

    Args:
        env: the environment. Pixels come from a Box image observation, ``pixel_key`` of a Dict
            observation (every uint8 image entry when None: several cameras are encoded
            together), or ``env.render()`` when the observation has no image (needs
            ``render_mode="rgb_array"``).
        encoder: an :class:`Encoder` or a path given to :func:`load_encoder`. Share one encoder
            between envs; better, vectorise and use :class:`VectorFeatureObservationWrapper`.
        output: "grid" (D, h, w), "tokens" (P, D), "cls" (D,) or "pooled" (D,), float32.
        pixel_key: the Dict entry holding the RGB image, or a list of entries (cameras).
        keep_pixels: also return the image(s) (the observation becomes a Dict).
        features_key: the features' key in Dict observations (one camera).

    A Dict observation stays a Dict: the features replace the image(s) (one camera: under
    ``features_key``; several: each under its camera's key), other entries (e.g. proprioception)
    pass through. Features are deterministic, so seeded resets reproduce them and
    ``gymnasium.utils.env_checker.check_env`` passes on the wrapped env.
    """

    def __init__(
        self,
        env: gym.Env,
        encoder: Encoder | str | Path,
        output: str = "grid",
        pixel_key: str | Sequence[str] | None = None,
        keep_pixels: bool = False,
        features_key: str = "features",
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self, encoder=encoder, output=output, pixel_key=pixel_key, keep_pixels=keep_pixels, features_key=features_key
        )
        gym.ObservationWrapper.__init__(self, env)
        self.encoder = resolve_encoder(encoder)
        self.output = output
        features = feature_space(output, self.encoder.embed_dim, self.encoder.grid_size)
        self.source: PixelSource = find_pixel_source(
            env.observation_space, pixel_key, env.render_mode, keep_pixels, features_key
        )
        pixel_space = None
        if keep_pixels and self.source.kind == RENDER:
            pixel_space = render_pixel_space(env)
        elif keep_pixels and not self.source.keys:
            pixel_space = env.observation_space
        self.observation_space = wrapped_space(self.source, features, pixel_space)

    def observation(self, observation: Any) -> Any:
        images = self.source.images(observation, self.env.render)
        features = encode_groups(self.encoder, [np.asarray(im)[None] for im in images], self.output)
        return self.source.assemble(observation, [f[0] for f in features], images)
