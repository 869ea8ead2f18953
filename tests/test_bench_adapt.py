"""benchmarks/adapt/run.py end to end in --quick: every row trained, exported, probed; a rerun resumes.

Asserts structure only: at this size nothing is expected to beat anything (not even the base
over random init).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

pytest.importorskip("pybullet")



def _load_run():
    return importlib.import_module("benchmarks.adapt.run")


@pytest.mark.slow
def test_adapt_benchmark_quick_has_every_row_and_resumes(tmp_path, capsys):
    run = _load_run()
    out = tmp_path / "adapt"
    assert run.main(["--output", str(out), "--quick", "--markdown"]) == 0
    report = json.loads((out / "adapt.json").read_text())
    assert list(report["table"]) == list(run.ROWS)
    assert set(report["student_table"]) == set(run.ROWS)  # untrained rows repeat their single encoder
    # the base is a timm hub folder that timm loads on its own
    config = json.loads((out / "base" / "config.json").read_text())
    assert config["architecture"] == "vit_tiny_patch16_224" and (out / "base" / "model.safetensors").is_file()
    for r in report["runs"]:
        for scene in ("A", "B"):
            t = r["teacher"][scene]
            assert 0.0 <= t["miou"] <= 100.0 and t["depth_rmse"] > 0
        if run.ROWS[r["row"]]["kind"] == "train":
            assert "vidistill train" in r["command"] and "student" in r
            assert ("--init" in r["command"]) == run.ROWS[r["row"]]["init"]
            assert (Path(r["command"].split("--output ")[1].split()[0]) / "export" / "encoder.safetensors").is_file()
            assert all(0.0 < r["patch_cka"][scene] <= 1.0 + 1e-9 for scene in ("A", "B"))  # vs the base
            if run.ROWS[r["row"]]["init"]:
                assert 0.0 < r["weight_drift"]["student"]  # adaptation moved the base
    text = capsys.readouterr().out
    assert "| Row |" in text and "base + vidistill + Gram" in text and "patch CKA B / A" in text
    # a rerun reuses results, checkpoints and the base instead of training again
    files = sorted(out.glob("results/*.json")) + sorted(out.glob("runs/*/checkpoint.pt")) + [
        out / "base" / "model.safetensors"]
    before = [f.stat().st_mtime_ns for f in files]
    assert run.main(["--output", str(out), "--quick"]) == 0
    assert [f.stat().st_mtime_ns for f in files] == before
    # --force-probe probes every row again without training or exporting again
    trained = sorted(out.glob("runs/*/checkpoint.pt")) + sorted(out.glob("runs/*/export/encoder.safetensors"))
    before = [f.stat().st_mtime_ns for f in trained]
    results_before = [f.stat().st_mtime_ns for f in sorted(out.glob("results/*.json"))]
    assert run.main(["--output", str(out), "--quick", "--force-probe"]) == 0
    assert [f.stat().st_mtime_ns for f in trained] == before
    assert all(a < b for a, b in zip(results_before, [f.stat().st_mtime_ns for f in sorted(out.glob("results/*.json"))],
                                     strict=True))
    rerun = json.loads((out / "adapt.json").read_text())
    assert all("vidistill train" in r["command"] for r in rerun["runs"] if run.ROWS[r["row"]]["kind"] == "train")
