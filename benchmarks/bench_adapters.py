"""Robot adapters overhead: wrapper vs its parts, and what batching sub-envs buys.

cpu-tiny encoder (ViT-Tiny/16, 96 px, random init) exported by ``vidistill export`` and served
by the ONNX Runtime backend, on a tiny 96x96 pixel environment.

* ``wrapper``: one ``FeatureObservationWrapper.step`` vs (``env.step`` + a bare
  ``encoder.encode`` of that frame). Goal: <= 1.05x (the wrapper adds next to nothing).
* ``vector``: the per-env cost of encoding N sub-envs in ONE call
  (``VectorFeatureObservationWrapper``) for N = 1, 4, 8, and the ratio to N = 1. Goal at 8:
  <= 0.4x. Also the per-env cost of the whole wrapped vector step.

Each round calls every variant once, in turn (background load hits them alike); the table gives
medians, and ratios are medians of per-round ratios.

    python benchmarks/bench_adapters.py          # quick
    python benchmarks/bench_adapters.py --full   # more rounds
    python benchmarks/bench_adapters.py --backend torch --device cuda   # on a GPU
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium import spaces

SIZE = 96
WRAPPER_GOAL = 1.05
VECTOR_GOAL = 0.4
VECTOR_SIZES = (1, 4, 8)


class SquareEnv(gym.Env):
    """96x96 RGB frames with a square left or right; reward 1 when the action names the side."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, size: int = SIZE):
        self.size = size
        self.observation_space = spaces.Box(0, 255, (size, size, 3), np.uint8)
        self.action_space = spaces.Discrete(2)

    def _frame(self) -> np.ndarray:
        self._side = int(self.np_random.integers(2))
        img = np.full((self.size, self.size, 3), 20, np.uint8)
        x0 = int(self.np_random.integers(0, self.size // 4)) + self._side * self.size // 2
        img[30:54, x0 : x0 + 24] = (230, 200, 40)
        return img

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self._frame(), {}

    def step(self, action):
        reward = float(int(action) == self._side)
        self._t += 1
        return self._frame(), reward, self._t >= 50, False, {}


def make_encoder(workdir: Path, backend: str = "onnx", device: str | None = "cpu"):
    """A random-init cpu-tiny checkpoint, exported, served by ``backend`` on ``device``."""
    from vidistill.config import build_config
    from vidistill.runtime import load_encoder
    from vidistill.train.checkpoint import write_random_init_checkpoint

    ckpt = write_random_init_checkpoint(build_config("cpu-tiny"), workdir / "run")
    try:
        from vidistill.export.pipeline import ExportOptions, export_checkpoint

        export_checkpoint(ExportOptions(source=ckpt, parity_batches=(2,)))
    except ImportError:  # the export package is not there: only the torch backend can be measured
        backend = "torch"
    return load_encoder(workdir / "run", backend=backend, device=device)


def _interleaved(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Seconds per call of each fn, one sample per round; each round calls every fn once, in turn,
    so a burst of background load hits all of them alike (compare them round by round)."""
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():  # warm-up
        for _ in range(3):
            fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t)
    return samples


def _median(xs: list[float]) -> float:
    return statistics.median(xs)


def _paired_ratio(num: list[float], den: list[float], scale: float = 1.0) -> float:
    """Median over rounds of num/den (paired samples cancel the load drift between rounds)."""
    return statistics.median(n / (d * scale) for n, d in zip(num, den, strict=True))


def bench_wrapper(encoder, rounds: int) -> dict:
    from vidistill.robot_adapters import FeatureObservationWrapper

    env = SquareEnv()
    env.reset(seed=0)
    wrapped = FeatureObservationWrapper(SquareEnv(), encoder, output="grid")
    wrapped.reset(seed=0)
    frame = env.step(0)[0]

    def env_plus_encode():
        obs = env.step(0)[0]
        encoder.encode(obs).grid()

    t = _interleaved(
        {"env_step": lambda: env.step(0), "encode": lambda: encoder.encode(frame).grid(),
         "env_step+encode": env_plus_encode, "wrapped_step": lambda: wrapped.step(0)},
        rounds,
    )
    return {
        "bench": "wrapper", "backend": encoder.backend, "device": encoder.device, "env_step_ms": 1e3 * _median(t["env_step"]),
        "encode_ms": 1e3 * _median(t["encode"]), "env_step_plus_encode_ms": 1e3 * _median(t["env_step+encode"]),
        "wrapped_step_ms": 1e3 * _median(t["wrapped_step"]),
        "ratio": _paired_ratio(t["wrapped_step"], t["env_step+encode"]), "goal": WRAPPER_GOAL,
    }


def bench_vector(encoder, rounds: int) -> list[dict]:
    from vidistill.robot_adapters import VectorFeatureObservationWrapper

    fns: dict[str, Callable[[], object]] = {}
    for n in VECTOR_SIZES:
        frames = np.stack([SquareEnv().reset(seed=i)[0] for i in range(n)])
        venv = VectorFeatureObservationWrapper(
            gym.vector.SyncVectorEnv([SquareEnv for _ in range(n)]), encoder, output="grid"
        )
        venv.reset(seed=0)
        actions = np.zeros(n, dtype=np.int64)
        fns[f"encode{n}"] = lambda frames=frames: encoder.encode(frames).grid()
        fns[f"step{n}"] = lambda venv=venv, actions=actions: venv.step(actions)
    t = _interleaved(fns, rounds)
    rows = []
    for n in VECTOR_SIZES:
        rows.append({
            "bench": "vector", "backend": encoder.backend, "device": encoder.device, "num_envs": n,
            "encode_per_env_ms": 1e3 * _median(t[f"encode{n}"]) / n,
            "wrapped_step_per_env_ms": 1e3 * _median(t[f"step{n}"]) / n,
            "ratio": _paired_ratio(t[f"encode{n}"], t["encode1"], scale=n),
            "goal": VECTOR_GOAL if n == max(VECTOR_SIZES) else None,
        })
    return rows


def run(quick: bool = True, backend: str = "onnx", device: str | None = "cpu") -> list[dict]:
    """Rows: one ``wrapper`` row and one ``vector`` row per N (see the module docstring)."""
    rounds = 60 if quick else 300
    with tempfile.TemporaryDirectory() as tmp:
        encoder = make_encoder(Path(tmp), backend, device)
        rows = [bench_wrapper(encoder, rounds)]
        rows += bench_vector(encoder, rounds)
    return rows


def format_table(rows: list[dict]) -> str:
    lines = []
    w = next(r for r in rows if r["bench"] == "wrapper")
    lines.append(f"single env, {w['backend']} backend on {w['device']}, cpu-tiny 96 px (median ms per step)")
    lines.append(f"  env.step                 {w['env_step_ms']:8.3f}")
    lines.append(f"  encode (bare, 1 image)   {w['encode_ms']:8.3f}")
    lines.append(f"  env.step + encode        {w['env_step_plus_encode_ms']:8.3f}")
    lines.append(f"  wrapped step             {w['wrapped_step_ms']:8.3f}   ratio {w['ratio']:.3f} (goal <= {WRAPPER_GOAL})")
    lines.append("")
    lines.append("vector env, one batched encode per step (median ms per sub-env)")
    lines.append(f"  {'envs':>4}  {'encode/env':>10}  {'wrapped step/env':>16}  {'vs 1 env':>8}")
    for r in (r for r in rows if r["bench"] == "vector"):
        goal = f"  (goal <= {r['goal']})" if r["goal"] else ""
        lines.append(f"  {r['num_envs']:>4}  {r['encode_per_env_ms']:>10.3f}  {r['wrapped_step_per_env_ms']:>16.3f}  {r['ratio']:>8.3f}{goal}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="more rounds")
    parser.add_argument("--backend", default="onnx", choices=("auto", "onnx", "torch", "tensorrt"))
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, tensorrt (ORT's TensorRT EP)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(format_table(run(quick=not args.full, backend=args.backend, device=args.device)))


if __name__ == "__main__":
    main()
