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

    python -m benchmarks.bench_adapters          # quick
    python -m benchmarks.bench_adapters --full   # more rounds
    python -m benchmarks.bench_adapters --backend torch --device cuda   # on a GPU
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np

from benchmarks.common import SquareEnv, interleaved, paired_ratio

EPISODE = 50  # steps before the toy env ends an episode (the vector env then resets it)
WRAPPER_GOAL = 1.05
VECTOR_GOAL = 0.4
VECTOR_SIZES = (1, 4, 8)


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


def bench_wrapper(encoder, rounds: int) -> dict:
    from vidistill.robot_adapters import FeatureObservationWrapper

    env = SquareEnv(episode_len=EPISODE)
    env.reset(seed=0)
    wrapped = FeatureObservationWrapper(SquareEnv(episode_len=EPISODE), encoder, output="grid")
    wrapped.reset(seed=0)
    frame = env.step(0)[0]

    def env_plus_encode():
        obs = env.step(0)[0]
        encoder.encode(obs).grid()

    t = interleaved(
        {"env_step": lambda: env.step(0), "encode": lambda: encoder.encode(frame).grid(),
         "env_step+encode": env_plus_encode, "wrapped_step": lambda: wrapped.step(0)},
        rounds, warmup=3,
    )
    return {
        "bench": "wrapper", "backend": encoder.backend, "device": encoder.device, "env_step_ms": 1e3 * statistics.median(t["env_step"]),
        "encode_ms": 1e3 * statistics.median(t["encode"]), "env_step_plus_encode_ms": 1e3 * statistics.median(t["env_step+encode"]),
        "wrapped_step_ms": 1e3 * statistics.median(t["wrapped_step"]),
        "ratio": paired_ratio(t["wrapped_step"], t["env_step+encode"]), "goal": WRAPPER_GOAL,
    }


def bench_vector(encoder, rounds: int) -> list[dict]:
    from vidistill.robot_adapters import VectorFeatureObservationWrapper

    fns: dict[str, Callable[[], object]] = {}
    for n in VECTOR_SIZES:
        frames = np.stack([SquareEnv().reset(seed=i)[0] for i in range(n)])
        venv = VectorFeatureObservationWrapper(
            gym.vector.SyncVectorEnv([lambda: SquareEnv(episode_len=EPISODE) for _ in range(n)]), encoder, output="grid"
        )
        venv.reset(seed=0)
        actions = np.zeros(n, dtype=np.int64)
        fns[f"encode{n}"] = lambda frames=frames: encoder.encode(frames).grid()
        fns[f"step{n}"] = lambda venv=venv, actions=actions: venv.step(actions)
    t = interleaved(fns, rounds, warmup=3)
    rows = []
    for n in VECTOR_SIZES:
        rows.append({
            "bench": "vector", "backend": encoder.backend, "device": encoder.device, "num_envs": n,
            "encode_per_env_ms": 1e3 * statistics.median(t[f"encode{n}"]) / n,
            "wrapped_step_per_env_ms": 1e3 * statistics.median(t[f"step{n}"]) / n,
            "ratio": paired_ratio(t[f"encode{n}"], t["encode1"], scale=n),
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
