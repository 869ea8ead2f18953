"""Roll BC policies out on the real Meta-World env, the policy seeing the ONNX export through
``FeatureObservationWrapper`` (frames rendered offscreen and encoded live, one step at a time).

Run as its own process by ``run.py`` (``python -m benchmarks.metaworld.rollout JOBS.json``): OpenGL (EGL/OSMesa) and
the exporter's libraries are kept out of one process, and MuJoCo's GL state out of the trainer's.
Each job writes one JSON (success per rollout, steps); a job whose JSON exists is skipped.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROLLOUT_SEED = 50_000  # the same starts for every encoder; no other split draws from this range


def rollout_job(job: dict) -> dict:
    import torch

    from benchmarks.metaworld.bc import BCPolicy
    from benchmarks.metaworld.mw_env import make_env, success
    from vidistill.robot_adapters import FeatureObservationWrapper
    from vidistill.runtime import load_encoder

    t0 = time.perf_counter()
    policy = BCPolicy.from_state(torch.load(job["policy"], weights_only=False))
    encoder = load_encoder(job["export"], backend=job["backend"])
    env = FeatureObservationWrapper(make_env(job["task"], job["size"], variation=job["variation"],
                                             max_steps=job["horizon"]),
                                    encoder, output=job.get("features", "cls"), pixel_key="pixels")
    outcomes, lengths = [], []
    seed0 = ROLLOUT_SEED + 1000 * job["task_index"] + (0 if job["variation"] == "none" else 500)
    try:
        for k in range(job["n"]):
            obs, info = env.reset(seed=seed0 + k)
            policy.reset()
            ok, steps = False, 0
            for steps in range(1, job["horizon"] + 1):  # noqa: B007
                obs, _, terminated, truncated, info = env.step(policy.act(obs["features"], obs["state"]))
                if success(info):
                    ok = True
                    break
                if terminated or truncated:
                    break
            outcomes.append(ok)
            lengths.append(steps)
    finally:
        env.close()
        encoder.close()
    result = {"task": job["task"], "variation": job["variation"], "success": outcomes, "steps": lengths,
              "success_rate": sum(outcomes) / max(1, len(outcomes)), "seconds": time.perf_counter() - t0}
    path = Path(job["output"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    import os

    argv = sys.argv[1:] if argv is None else argv
    os.environ.setdefault("MUJOCO_GL", "egl")
    jobs = json.loads(Path(argv[0]).read_text())
    for job in jobs:
        if not Path(job["output"]).is_file():
            r = rollout_job(job)
            print(f"{job['output']}: success {100 * r['success_rate']:.0f}% in {r['seconds']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
