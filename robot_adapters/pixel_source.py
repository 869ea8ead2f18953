"""Where a wrapper finds the pixels, and the observation space it produces (shared by the
gymnasium, vector and SB3 wrappers).

Pixels are taken from (in this order): ``pixel_key`` of a Dict observation (a name, or a list
of names: several cameras); a Box image observation; every uint8 image entry of a Dict
observation (one or several cameras); else ``env.render()``, which needs
``render_mode="rgb_array"`` (the pattern of gymnasium's ``AddRenderObservation``).

The wrapped observation is the feature array alone, or a Dict when the original observation is
a Dict or ``keep_pixels=True``: the original entries pass through (a Dict's other keys, e.g.
proprioception; a non-image, non-Dict observation under ``state``). One camera: its features
under ``features_key``, the image dropped (kept, with ``keep_pixels=True``, under its Dict key
or ``pixels``). Several cameras: each camera's features under the camera's own key (with
``keep_pixels=True``: under ``<key>_<features_key>``, the images kept). All cameras (and, in
vector envs, all sub-envs) go through ONE batched ``encode`` call per step: :func:`encode_groups`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from vidistill.runtime.features import OUTPUTS, output_shape

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


def encode_groups(encoder: Any, groups: Sequence[Any], output: str) -> list[np.ndarray]:
    """Encode several image batches (cameras, sub-envs, terminal observations) in ONE call.

    ``groups``: arrays (n_i, H_i, W_i, 3); returns the ``output`` features of each, (n_i, ...).
    Same-size groups are concatenated; mixed camera sizes go as a list of single images.
    """
    groups = [np.asarray(g) for g in groups]
    sizes = [len(g) for g in groups]
    if len({g.shape[1:] for g in groups}) == 1:
        batch: Any = groups[0] if len(groups) == 1 else np.concatenate(groups)
    else:
        batch = [img for g in groups for img in g]
    features = encoder.encode(batch).select(output)
    out, start = [], 0
    for n in sizes:
        out.append(features[start : start + n])
        start += n
    return out


@dataclass(frozen=True)
class PixelSource:
    kind: str  # BOX, DICT or RENDER
    keys: tuple[str, ...]  # the Dict keys for DICT (one per camera)
    keep_pixels: bool
    features_key: str
    dict_output: bool
    original: spaces.Space

    @property
    def key(self) -> str | None:
        """The Dict key of a single camera (None otherwise)."""
        return self.keys[0] if len(self.keys) == 1 else None

    @property
    def multi(self) -> bool:
        return len(self.keys) > 1

    def feature_key(self, camera: str | None) -> str:
        if not self.multi:
            return self.features_key
        return f"{camera}_{self.features_key}" if self.keep_pixels else camera

    def images(self, obs: Any, render: Any = None) -> list[Any]:
        """The image (or batch of images) of each camera in ``obs``."""
        if self.kind == BOX:
            return [obs]
        if self.kind == DICT:
            return [obs[k] for k in self.keys]
        frame = render()
        if frame is None:
            raise ValueError("env.render() returned None: the environment must be made with render_mode='rgb_array'")
        return [frame]

    def assemble(self, obs: Any, features: Sequence[np.ndarray], images: Sequence[Any]) -> Any:
        """The wrapped observation from the original one and each camera's features and images."""
        if not self.dict_output:
            return features[0]
        out = {}
        if isinstance(self.original, spaces.Dict):
            for k, v in obs.items():
                if k not in self.keys or self.keep_pixels:
                    out[k] = v
        elif self.kind == RENDER:
            out[STATE_KEY] = obs
        if self.keep_pixels and self.kind != DICT:
            out[PIXELS_KEY] = np.asarray(images[0])
        for camera, f in zip(self.keys or (None,), features, strict=True):
            out[self.feature_key(camera)] = f
        return out


def _channels_first_error(space: spaces.Space, where: str) -> ValueError | None:
    chw = [k for k, sp in (space.spaces.items() if isinstance(space, spaces.Dict) else [(None, space)])
           if isinstance(sp, spaces.Box) and sp.dtype == np.uint8 and len(sp.shape) == 3 and sp.shape[0] == 3]
    if not chw:
        return None
    where_ = "" if chw[0] is None else f" (key {chw[0]!r})"
    return ValueError(
        f"the {where}'s image observation{where_} is channels-first uint8 {space if chw[0] is None else space[chw[0]]}; "
        "the encoder takes channels-last (H, W, 3) RGB: apply this wrapper before any channels-first "
        "transpose (e.g. SB3's VecTransposeImage, which SB3 only adds for image spaces)"
    )


def find_pixel_source(
    space: spaces.Space,
    pixel_key: str | Sequence[str] | None,
    render_mode: str | None,
    keep_pixels: bool = False,
    features_key: str = "features",
    where: str = "environment",
) -> PixelSource:
    """Decide where the pixels come from for observations of ``space`` (see module docstring)."""
    if pixel_key is not None:
        keys = (pixel_key,) if isinstance(pixel_key, str) else tuple(pixel_key)
        if not keys:
            raise ValueError("pixel_key=[]: name at least one image key")
        for key in keys:
            if not isinstance(space, spaces.Dict) or key not in space.spaces:
                have = list(space.spaces) if isinstance(space, spaces.Dict) else None
                raise ValueError(f"pixel_key={key!r}: the {where}'s observation space has no such key "
                                 f"(it is {type(space).__name__}{'' if have is None else f' with keys {have}'})")
            if not is_image_space(space[key]):
                raise ValueError(f"pixel_key={key!r} is {space[key]}; expected a uint8 Box of shape (H, W, 3) (RGB images)")
        kind = DICT
    elif is_image_space(space):
        kind, keys = BOX, ()
    elif isinstance(space, spaces.Dict) and any(is_image_space(s) for s in space.values()):
        kind, keys = DICT, tuple(k for k, s in space.items() if is_image_space(s))
    else:
        error = _channels_first_error(space, where)
        if error is not None:
            raise error
        if render_mode != "rgb_array":
            raise ValueError(
                f"the {where}'s observation space {space} holds no RGB image (uint8 (H, W, 3)), so pixels must "
                f"come from env.render(), which needs render_mode='rgb_array' but it is {render_mode!r}: make the "
                "environment with gym.make(..., render_mode='rgb_array'), or give pixel_key= for a Dict image entry"
            )
        kind, keys = RENDER, ()
    dict_output = isinstance(space, spaces.Dict) or keep_pixels
    source = PixelSource(kind, keys, keep_pixels, features_key, dict_output, space)
    if isinstance(space, spaces.Dict):
        for camera in keys or (None,):
            name = source.feature_key(camera)
            if name in space.spaces and not (source.multi and name == camera):
                raise ValueError(f"the observation already has a {name!r} key: choose another features_key=")
    return source


def feature_space(output: str, embed_dim: int, grid_size: tuple[int, int]) -> spaces.Box:
    """float32 Box for one observation's features: grid (D, h, w), tokens (P, D), cls/pooled (D,)."""
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    return spaces.Box(-np.inf, np.inf, shape=output_shape(output, embed_dim, grid_size), dtype=np.float32)


def wrapped_space(source: PixelSource, features: spaces.Box, pixel_space: spaces.Box | None) -> spaces.Space:
    """The single-environment observation space the wrapper produces."""
    if not source.dict_output:
        return features
    entries: dict[str, spaces.Space] = {}
    if isinstance(source.original, spaces.Dict):
        for k, s in source.original.spaces.items():
            if k not in source.keys or source.keep_pixels:
                entries[k] = s
    elif source.kind == RENDER:
        entries[STATE_KEY] = source.original
    if source.keep_pixels and source.kind != DICT:
        entries[PIXELS_KEY] = pixel_space
    for camera in source.keys or (None,):
        entries[source.feature_key(camera)] = features
    return spaces.Dict(entries)
