"""Where a wrapper finds the pixels, and the observation space it produces (shared by the
gymnasium, vector and SB3 wrappers).

Pixels are taken from (in this order): ``pixel_key`` of a Dict observation; a Box image
observation; the single uint8 image entry of a Dict observation; else ``env.render()``, which
needs ``render_mode="rgb_array"`` (the pattern of gymnasium's ``AddRenderObservation``).

The wrapped observation is the feature array alone, or a Dict when the original observation is
a Dict or ``keep_pixels=True``: ``features`` plus the original entries (a Dict's other keys,
e.g. proprioception; a non-image, non-Dict observation under ``state``) and, with
``keep_pixels=True``, the image itself (under its Dict key, or ``pixels``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from .features import OUTPUTS, output_shape

BOX, DICT, RENDER = "box", "dict", "render"
PIXELS_KEY = "pixels"
STATE_KEY = "state"


def is_image_space(space: spaces.Space) -> bool:
    """A uint8 Box of shape (H, W, 3): what the encoder takes."""
    return (
        isinstance(space, spaces.Box)
        and space.dtype == np.uint8
        and len(space.shape) == 3
        and space.shape[-1] == 3
    )


@dataclass(frozen=True)
class PixelSource:
    kind: str  # BOX, DICT or RENDER
    key: str | None  # the Dict key for DICT
    keep_pixels: bool
    features_key: str
    dict_output: bool
    original: spaces.Space

    def pixels(self, obs: Any, render: Any = None) -> Any:
        """The image(s) of one observation (or a batch of them) ``obs``."""
        if self.kind == BOX:
            return obs
        if self.kind == DICT:
            return obs[self.key]
        frame = render()
        if frame is None:
            raise ValueError("env.render() returned None: the environment must be made with render_mode='rgb_array'")
        return frame

    def assemble(self, obs: Any, features: np.ndarray, pixels: Any) -> Any:
        """The wrapped observation from the original one, its features and its pixels."""
        if not self.dict_output:
            return features
        out = {self.features_key: features}
        if isinstance(self.original, spaces.Dict):
            for k, v in obs.items():
                if k != self.key or self.keep_pixels:
                    out[k] = v
        elif self.kind == RENDER:
            out[STATE_KEY] = obs
        if self.keep_pixels and self.kind != DICT:
            out[PIXELS_KEY] = np.asarray(pixels)
        return out


def find_pixel_source(
    space: spaces.Space,
    pixel_key: str | None,
    render_mode: str | None,
    keep_pixels: bool = False,
    features_key: str = "features",
    where: str = "environment",
) -> PixelSource:
    """Decide where the pixels come from for observations of ``space`` (see module docstring)."""
    if pixel_key is not None:
        if not isinstance(space, spaces.Dict) or pixel_key not in space.spaces:
            keys = list(space.spaces) if isinstance(space, spaces.Dict) else None
            raise ValueError(f"pixel_key={pixel_key!r}: the {where}'s observation space has no such key "
                             f"(it is {type(space).__name__}{'' if keys is None else f' with keys {keys}'})")
        if not is_image_space(space[pixel_key]):
            raise ValueError(f"pixel_key={pixel_key!r} is {space[pixel_key]}; expected a uint8 Box of shape (H, W, 3) (RGB images)")
        kind, key = DICT, pixel_key
    elif is_image_space(space):
        kind, key = BOX, None
    elif isinstance(space, spaces.Dict) and any(is_image_space(s) for s in space.values()):
        images = [k for k, s in space.items() if is_image_space(s)]
        if len(images) > 1:
            raise ValueError(f"the {where}'s Dict observation has several images {images}: choose one with pixel_key=")
        kind, key = DICT, images[0]
    else:
        chw = [k for k, sp in (space.spaces.items() if isinstance(space, spaces.Dict) else [(None, space)])
               if isinstance(sp, spaces.Box) and sp.dtype == np.uint8 and len(sp.shape) == 3 and sp.shape[0] == 3]
        if chw:
            where_ = "" if chw[0] is None else f" (key {chw[0]!r})"
            raise ValueError(
                f"the {where}'s image observation{where_} is channels-first uint8 {space if chw[0] is None else space[chw[0]]}; "
                "the encoder takes channels-last (H, W, 3) RGB: apply this wrapper before any channels-first "
                "transpose (e.g. SB3's VecTransposeImage, which SB3 only adds for image spaces)"
            )
        if render_mode != "rgb_array":
            raise ValueError(
                f"the {where}'s observation space {space} holds no RGB image (uint8 (H, W, 3)), so pixels must "
                f"come from env.render(), which needs render_mode='rgb_array' but it is {render_mode!r}: make the "
                "environment with gym.make(..., render_mode='rgb_array'), or give pixel_key= for a Dict image entry"
            )
        kind, key = RENDER, None
    dict_output = isinstance(space, spaces.Dict) or keep_pixels
    if isinstance(space, spaces.Dict) and features_key in space.spaces:
        raise ValueError(f"the observation already has a {features_key!r} key: choose another features_key=")
    return PixelSource(kind, key, keep_pixels, features_key, dict_output, space)


def feature_space(output: str, embed_dim: int, grid_size: tuple[int, int]) -> spaces.Box:
    """float32 Box for one observation's features: grid (D, h, w), tokens (P, D), cls/pooled (D,)."""
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    return spaces.Box(-np.inf, np.inf, shape=output_shape(output, embed_dim, grid_size), dtype=np.float32)


def wrapped_space(source: PixelSource, features: spaces.Box, pixel_space: spaces.Box | None) -> spaces.Space:
    """The single-environment observation space the wrapper produces."""
    if not source.dict_output:
        return features
    entries: dict[str, spaces.Space] = {source.features_key: features}
    if isinstance(source.original, spaces.Dict):
        for k, s in source.original.spaces.items():
            if k != source.key or source.keep_pixels:
                entries[k] = s
    elif source.kind == RENDER:
        entries[STATE_KEY] = source.original
    if source.keep_pixels and source.kind != DICT:
        entries[PIXELS_KEY] = pixel_space
    return spaces.Dict(entries)
