"""Meta-World behaviour cloning through the real chain (benchmarks/metaworld), smoke size.

Records 1 task with metaworld's scripted expert into LeRobot v3.0 datasets, reads them back with
vidistill's reader, trains (2 steps) and exports the encoders, fits BC on cached features and rolls
the policy out on the real env through FeatureObservationWrapper and the ONNX export. Skipped,
with the reason, where metaworld or mujoco is not installed or cannot render offscreen.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _render_check() -> str | None:
    """None when a Meta-World frame renders here, else why not (in a subprocess: a GL failure
    must not take the test process down)."""
    try:
        import metaworld  # noqa: F401
        import mujoco  # noqa: F401
    except Exception as e:  # ImportError, or mujoco's own GL errors at import
        return f"metaworld/mujoco not importable ({e}); pip install -e '.[metaworld]'"
    code = ("from benchmarks.metaworld.mw_env import make_env; "
            "env = make_env('button-press-topdown', 32); o, _ = env.reset(seed=0); "
            "assert o['pixels'].max() > 0, 'black frame'; env.close()")
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    if r.returncode:
        return f"MuJoCo cannot render offscreen with MUJOCO_GL={env['MUJOCO_GL']}: {r.stderr.strip()[-300:]}"
    return None


@pytest.fixture(scope="module")
def renderable():
    reason = _render_check()
    if reason:
        pytest.skip(reason)


@pytest.mark.slow
def test_metaworld_quick_run(renderable, tmp_path):
    out = tmp_path / "mw"
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "VIDISTILL_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "benchmarks.metaworld.run", "--output", str(out), "--quick", "--rows", "random",
                        "vidistill"], capture_output=True, text=True, timeout=900, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]

    # The recordings are LeRobot v3.0 datasets that vidistill's own reader opens.
    from vidistill.data.sources import discover_sources

    for split in ("robot_log", "demos", "heldout", "ood"):
        info = json.loads((out / "data" / split / "meta" / "info.json").read_text())
        assert info["codebase_version"] == "v3.0"
        assert {"action", "observation.state"} <= set(info["features"])
        sources = discover_sources([out / "data" / split])
        assert len(sources) == info["total_episodes"] and sum(map(len, sources)) == info["total_frames"]
        assert sources[0].read(0).std() > 5  # a rendered scene, not a blank frame
    report = json.loads((out / "metaworld.json").read_text())
    assert set(report["table"]) == {"random", "vidistill"}
    for row in ("random_s0", "vidistill_s0"):
        assert (out / "encoders" / row / "export" / "encoder.onnx").is_file()
        rolled = json.loads((out / "rollouts" / f"{row}_button-press-topdown_none.json").read_text())
        assert len(rolled["success"]) == 2 and all(1 <= s <= 80 for s in rolled["steps"])
    def judged() -> list[str]:  # the exports `eval actions` compared (its random-init floor aside)
        rows = json.loads((out / "eval_actions" / "heldout.json").read_text())["rows"]
        return sorted(r["encoder"] for r in rows if r["encoder"] != "random init")

    assert judged() == [str(out / "encoders" / r / "export") for r in ("random_s0", "vidistill_s0")]
    # A rerun resumes: nothing is recorded, trained or rolled out again.
    r2 = subprocess.run([sys.executable, "-m", "benchmarks.metaworld.run", "--output", str(out), "--quick", "--rows", "random",
                         "vidistill"], capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert r2.returncode == 0, r2.stderr[-3000:]
    again = json.loads((out / "metaworld.json").read_text())
    assert set(again["seconds_this_invocation"]) == {"record (this invocation)"}
    assert again["table"] == report["table"]

    # A policy on the mean patch token shares the encoders and keeps its own policies and rollouts;
    # the "base (as is)" row exports a timm hub folder (timm's own save_for_hf) as it is.
    import timm
    import torch
    from timm.models._hub import save_for_hf

    torch.manual_seed(0)
    args = {"img_size": 48, "embed_dim": 64, "depth": 2, "num_heads": 2}
    save_for_hf(timm.create_model("vit_tiny_patch16_224", num_classes=0, **args), str(tmp_path / "base"),
                model_args=args, safe_serialization=True)
    r3 = subprocess.run([sys.executable, "-m", "benchmarks.metaworld.run", "--output", str(out), "--quick", "--rows",
                         "random", "base", "--base", str(tmp_path / "base"), "--features", "pooled"],
                        capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert r3.returncode == 0, r3.stderr[-3000:]
    pooled = json.loads((out / "metaworld_pooled.json").read_text())
    assert "train" not in pooled["seconds_this_invocation"] and "rollouts" in pooled["seconds_this_invocation"]
    for row in ("random_s0", "base_s0"):
        assert (out / "rollouts" / f"{row}_pooled_button-press-topdown_none.json").is_file()
    assert json.loads((out / "encoders" / "base_s0" / "export" / "manifest.json").read_text())["source_checkpoint"] \
        == str((tmp_path / "base" / "model.safetensors").resolve())
    assert judged() == [str(out / "encoders" / r / "export") for r in ("base_s0", "random_s0")]  # judged anew
    import numpy as np

    cls, mean_patch = (np.load(out / "features" / f"random_s0{tag}_demos.npy") for tag in ("", "_pooled"))
    assert cls.shape == mean_patch.shape and not np.allclose(cls, mean_patch)
    assert json.loads((out / "metaworld.json").read_text())["table"] == report["table"]  # the [CLS] report untouched
