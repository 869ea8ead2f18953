"""Test data for the runtime, export, eval and adapter tests: artefacts made by the REAL exporter
(``vidistill.export.pipeline.export_checkpoint``, what ``vidistill export`` runs) from a
random-init cpu-tiny checkpoint, built once per test session, and tiny pixel environments.

Import the pytest fixtures into a test module with ``from runtime_fixtures import artefacts``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gymnasium import spaces

from benchmarks.common import SquareEnv  # the toy env the adapter benchmark steps too

IMAGE = 96  # cpu-tiny: ViT-Tiny/16 at 96 px, 6x6 grid, D=192

_CACHE: dict[str, Path] = {}


def export_run(checkpoint: Path, output: Path, **options) -> Path:
    """``vidistill export CHECKPOINT --output OUTPUT`` through its Python entry; the export folder."""
    from vidistill.export.pipeline import ExportOptions, export_checkpoint

    return export_checkpoint(ExportOptions(source=checkpoint, output=output, parity_batches=(2,), **options)).output


def build_artefacts(root: Path) -> dict[str, Path]:
    """{'run': run folder (checkpoint only), 'checkpoint': .pt, 'export': its export folder, 'onnx': .onnx}."""
    from vidistill.config import build_config
    from vidistill.train.checkpoint import write_random_init_checkpoint

    ckpt = write_random_init_checkpoint(build_config("cpu-tiny"), root / "run")
    export = export_run(ckpt, root / "export")
    return {"run": ckpt.parent, "checkpoint": ckpt, "export": export, "onnx": export / "encoder.onnx"}


@pytest.fixture(scope="session")
def artefacts(tmp_path_factory) -> dict[str, Path]:
    if not _CACHE:
        _CACHE.update(build_artefacts(tmp_path_factory.mktemp("runtime_artefacts")))
    return dict(_CACHE)


@pytest.fixture(scope="session")
def onnx_encoder(artefacts):
    from vidistill.runtime import load_encoder

    return load_encoder(artefacts["export"], backend="onnx", device="cpu")


@pytest.fixture(scope="session")
def torch_encoder(artefacts):
    from vidistill.runtime import load_encoder

    return load_encoder(artefacts["run"], backend="torch", device="cpu")


# -- tiny pixel environments -------------------------------------------------------------------

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
