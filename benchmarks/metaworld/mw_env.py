"""Meta-World tasks as pixel environments: the camera image and the robot's proprioception.

``make_env`` builds one Meta-World v3 task with random starts (object and goal positions drawn
from the task's reset space with the env's own seeded generator), renders the ``corner`` camera
offscreen at a small size with shadows and reflections off, and returns a gymnasium env whose
observation is ``{"pixels": (H, W, 3) uint8, "state": (4,) float32}`` (hand xyz + gripper
opening: what the robot knows about itself, never the object or goal positions). The expert
(metaworld's scripted policy) reads the full state, kept in ``info["full_state"]`` and
``env.full_state``.

Variations (the OOD split) change the MuJoCo model in place after it is loaded: ``light`` (warm
coloured light), ``table`` (another table colour), ``camera`` (the camera moved and turned a
little).
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco is imported; osmesa also works (slower)

CAMERA = "corner"
STATE_DIM = 4
OOD_VARIATIONS = ("light", "table", "camera")
VARIATIONS = ("none", *OOD_VARIATIONS)


def task_id(task: str) -> str:
    return task if task.endswith("-v3") else f"{task}-v3"


def expert_policy(task: str):
    from metaworld.policies import ENV_POLICY_MAP

    return ENV_POLICY_MAP[task_id(task)]()


class MetaWorldPixels(gym.Wrapper):
    """A Meta-World env seen through its camera: Dict(pixels, state); the full state in info."""

    def __init__(self, env: gym.Env, size: int, flip: bool) -> None:
        super().__init__(env)
        self.flip = flip
        self.full_state: np.ndarray | None = None
        self.observation_space = gym.spaces.Dict({
            "pixels": gym.spaces.Box(0, 255, (size, size, 3), np.uint8),
            "state": gym.spaces.Box(-np.inf, np.inf, (STATE_DIM,), np.float32),
        })

    def _observe(self, full: np.ndarray) -> dict:
        self.full_state = np.asarray(full, np.float64)
        # Each env owns a GL context; another env's (or a collected one's) may be current.
        self.env.unwrapped.mujoco_renderer._get_viewer("rgb_array").make_context_current()
        image = self.env.render()
        if self.flip:  # MuJoCo's offscreen buffer is bottom-up: the corner camera comes out upside down
            image = image[::-1]
        return {"pixels": np.ascontiguousarray(image), "state": self.full_state[:STATE_DIM].astype(np.float32)}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.env.unwrapped.seed(seed)
        full, info = self.env.reset()
        return self._observe(full), {**info, "full_state": self.full_state}

    def close(self) -> None:
        # Free MuJoCo's GL resources while this env's own context is current: freed later by the
        # garbage collector, they would be freed in whatever context is current then (another
        # env's), which blanks that env's frames.
        viewer = self.env.unwrapped.mujoco_renderer._viewers.get("rgb_array")
        if viewer is not None:
            viewer.make_context_current()
            viewer.con.free()
        super().close()

    def step(self, action):
        full, reward, terminated, truncated, info = self.env.step(np.asarray(action, np.float32))
        obs = self._observe(full)
        info = {**info, "full_state": self.full_state}
        return obs, float(reward), bool(terminated), bool(truncated), info


def _renderer_off(env) -> None:
    """Shadows and reflections off in the offscreen renderer's scene (cheaper, and less to learn)."""
    import mujoco

    viewer = env.unwrapped.mujoco_renderer._get_viewer("rgb_array")
    viewer.scn.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
    viewer.scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0


def _vary(env, variation: str) -> None:
    import mujoco

    model = env.unwrapped.model
    if variation == "light":
        model.light_diffuse[:] = model.light_diffuse * np.array([0.55, 0.45, 0.3])
        model.light_ambient[:] = np.array([0.25, 0.15, 0.1])
    elif variation == "table":
        for g in range(model.ngeom):
            name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_GEOM, g) or ""
            body = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, model.geom_bodyid[g]) or ""
            if "table" in name.lower() or "table" in body.lower():
                model.geom_matid[g] = -1  # drop the wood texture: a flat blue-green table
                model.geom_rgba[g] = np.array([0.2, 0.45, 0.5, 1.0])
    elif variation == "camera":
        cam = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, CAMERA)
        model.cam_pos[cam] += np.array([0.08, -0.06, 0.05])
        model.cam_fovy[cam] = model.cam_fovy[cam] * 0.92
    elif variation != "none":
        raise ValueError(f"unknown variation {variation!r} (one of {', '.join(VARIATIONS)})")


def make_env(task: str, size: int = 96, seed: int = 0, variation: str = "none", max_steps: int = 200,
             camera: str = CAMERA) -> MetaWorldPixels:
    """One Meta-World v3 task with random starts, seen at ``size`` px through ``camera``."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    cls = ALL_V3_ENVIRONMENTS[task_id(task)]
    env = cls(render_mode="rgb_array", camera_name=camera, width=size, height=size)
    env._partially_observable = False  # the expert needs the goal; the policy never sees it
    env._freeze_rand_vec = False
    env.seeded_rand_vec = True  # random starts from the env's own seeded generator
    env._set_task_called = True
    env.max_path_length = max_steps
    env.seed(seed)
    # No multisampling (MuJoCo's default 4x MSAA costs most of a software renderer's frame time).
    env.model.vis.quality.offsamples = 0
    _vary(env, variation)
    wrapped = MetaWorldPixels(gym.wrappers.TimeLimit(env, max_steps), size, flip=camera.startswith("corner"))
    _renderer_off(wrapped)
    return wrapped


def success(info: dict[str, Any]) -> bool:
    return bool(info.get("success", 0.0) > 0.5)
