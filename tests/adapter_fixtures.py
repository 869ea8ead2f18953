"""Test data for the robot adapters: a random-init cpu-tiny checkpoint, an export folder built
the way ``vidistill export`` lays it out, and tiny pixel environments.

Import the pytest fixtures into a test module with ``from adapter_fixtures import artefacts``.
The artefacts are built once per test session (cached here) and take a few seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

IMAGE = 96  # cpu-tiny: ViT-Tiny/16 at 96 px, 6x6 grid, D=192

_CACHE: dict[str, Path] = {}


def export_onnx(backbone, contract, path: Path) -> Path:
    """``encoder.onnx`` with the export layout: ``pixels`` -> ``cls``, ``patch_tokens``, dynamic batch."""
    import onnx
    import timm
    import torch

    fixed = timm.create_model(
        contract.model_name, pretrained=False, num_classes=0, img_size=contract.image_size, dynamic_img_size=False
    )
    fixed.load_state_dict(backbone.state_dict())
    fixed.eval()

    class Wrapper(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, pixels):
            tokens = self.m.forward_features(pixels)
            return tokens[:, 0], tokens[:, self.m.num_prefix_tokens :]

    x = torch.randn(2, 3, contract.image_size, contract.image_size)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Wrapper(fixed),
            (x,),
            str(path),
            input_names=["pixels"],
            output_names=["cls", "patch_tokens"],
            dynamic_axes={"pixels": {0: "batch"}, "cls": {0: "batch"}, "patch_tokens": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    model = onnx.load(str(path))
    entry = model.metadata_props.add()
    entry.key, entry.value = "vidistill.contract", contract.to_json()
    onnx.save(model, str(path))
    return path


def write_export_folder(backbone, contract, folder: Path, onnx: bool = True) -> Path:
    """encoder.safetensors + config.json (timm cfg, contract under "vidistill") + encoder.onnx + manifest."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in backbone.state_dict().items()}, str(folder / "encoder.safetensors"))
    config = {
        "architecture": contract.model_name,
        "num_classes": 0,
        "num_features": contract.embed_dim,
        "pretrained_cfg": {
            "input_size": [3, contract.image_size, contract.image_size],
            "mean": list(contract.mean),
            "std": list(contract.std),
        },
        "vidistill": contract.to_dict(),
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    files = ["encoder.safetensors", "config.json"]
    if onnx:
        export_onnx(backbone, contract, folder / "encoder.onnx")
        files.append("encoder.onnx")
    (folder / "manifest.json").write_text(json.dumps({"files": files, "contract": contract.to_dict()}))
    return folder


def build_artefacts(root: Path) -> dict[str, Path]:
    """{'run': run folder, 'checkpoint': .pt, 'export': export folder, 'onnx': .onnx}."""
    from vidistill.checkpoint import load_teacher_backbone, write_random_init_checkpoint
    from vidistill.config import build_config

    cfg = build_config("cpu-tiny")
    ckpt = write_random_init_checkpoint(cfg, root / "run")
    backbone, contract, _ = load_teacher_backbone(ckpt)
    export = write_export_folder(backbone, contract, root / "export")
    return {"run": ckpt.parent, "checkpoint": ckpt, "export": export, "onnx": export / "encoder.onnx"}


@pytest.fixture(scope="session")
def artefacts(tmp_path_factory) -> dict[str, Path]:
    if not _CACHE:
        _CACHE.update(build_artefacts(tmp_path_factory.mktemp("adapter_artefacts")))
    return dict(_CACHE)


@pytest.fixture(scope="session")
def onnx_encoder(artefacts):
    from vidistill.robot_adapters import load_encoder

    return load_encoder(artefacts["export"], backend="onnx", device="cpu")


@pytest.fixture(scope="session")
def torch_encoder(artefacts):
    from vidistill.robot_adapters import load_encoder

    return load_encoder(artefacts["run"], backend="torch", device="cpu")


# -- tiny pixel environments -------------------------------------------------------------------

def square_frame(side: int, rng: np.random.Generator, size: int = IMAGE) -> np.ndarray:
    """A dark frame with a bright square in the left (0) or right (1) half, jittered."""
    img = np.full((size, size, 3), 20, dtype=np.uint8)
    s = size // 4
    x0 = int(rng.integers(0, size // 2 - s)) + side * (size // 2)
    y0 = int(rng.integers(0, size - s))
    img[y0 : y0 + s, x0 : x0 + s] = (230, 200, 40)
    return img


class SquareEnv(gym.Env):
    """Box image observation; reward 1 when the action names the square's side. Random policy: 0.5."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, size: int = IMAGE, episode_len: int = 8, render_mode: str | None = None):
        self.size, self.episode_len, self.render_mode = size, episode_len, render_mode
        self.observation_space = spaces.Box(0, 255, (size, size, 3), dtype=np.uint8)
        self.action_space = spaces.Discrete(2)
        self._frame = np.zeros((size, size, 3), np.uint8)

    def _new_frame(self) -> np.ndarray:
        self._side = int(self.np_random.integers(2))
        self._frame = square_frame(self._side, self.np_random, self.size)
        return self._frame.copy()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self._new_frame(), {}

    def step(self, action):
        reward = float(int(action) == self._side)
        self._t += 1
        return self._new_frame(), reward, self._t >= self.episode_len, False, {}

    def render(self):
        return self._frame.copy() if self.render_mode == "rgb_array" else None


class DictSquareEnv(SquareEnv):
    """Dict observation: the image under ``pixels`` plus a ``proprio`` vector."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.observation_space = spaces.Dict(
            {"pixels": spaces.Box(0, 255, (self.size, self.size, 3), np.uint8),
             "proprio": spaces.Box(-1.0, 1.0, (4,), np.float32)}
        )

    def _obs(self, frame):
        return {"pixels": frame, "proprio": np.full(4, self._t / self.episode_len, np.float32)}

    def reset(self, *, seed=None, options=None):
        frame, info = super().reset(seed=seed, options=options)
        return self._obs(frame), info

    def step(self, action):
        frame, *rest = super().step(action)
        return (self._obs(frame), *rest)


class RenderOnlySquareEnv(SquareEnv):
    """The observation is a 2-vector state; the image is only available through render()."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)

    def _state(self):
        return np.array([self._t / self.episode_len, 0.0], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed, options=options)
        return self._state(), {}

    def step(self, action):
        _, *rest = super().step(action)
        return (self._state(), *rest)


def random_images(n: int, size: int = IMAGE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
