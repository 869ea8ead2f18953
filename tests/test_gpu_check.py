"""benchmarks/gpu_check.py's CPU-reachable paths (--cpu-smoke): every measurement runs at tiny
sizes and lands in one JSON; a failing one is recorded with its error; the time guard skips."""

from __future__ import annotations

import json
import time

from benchmarks import gpu_check


def test_cpu_smoke_writes_every_measurement(tmp_path):
    out = tmp_path / "gpu_check.json"
    data = gpu_check.run(out, smoke=True, budget_s=600)
    assert json.loads(out.read_text()) == json.loads(json.dumps(data, default=str))
    assert data["errors"] == {} and data["skipped"] == {}
    train = data["results"]["train eager"]
    for name in ("method", "dino"):
        assert train[name]["clips_per_s"] > 0
    assert train["ratio_method_dino"] > 0
    serving = data["results"]["serving"]
    assert serving["bf16 eager batch 1"]["latency_ms"] > 0 and serving["bf16 eager batch 2"]["images_per_s"] > 0
    assert set(data["results"]["max_batch"]["peak_gib_by_batch"]) == {2, 4}  # no CUDA: peaks unknown
    assert data["results"]["sync"]["ratio"] > 0
    assert data["results"]["views"]["device render"]["ms_per_batch"] > 0
    assert "train compiled" not in data["results"]  # compile runs on the GPU only


def test_errors_are_recorded_and_the_guard_skips(tmp_path):
    out = tmp_path / "g.json"
    report = gpu_check.Report(out, {"smoke": True})
    guard = gpu_check.Guard(budget_s=60)
    report.record("broken", lambda: 1 / 0, guard, needs_s=1)
    report.record("ok", lambda: {"x": 1}, guard, needs_s=1)
    report.record("too long", lambda: {"x": 2}, guard, needs_s=3600)
    data = json.loads(out.read_text())
    assert data["errors"]["broken"].startswith("ZeroDivisionError")
    assert data["results"]["ok"]["x"] == 1
    assert "time guard" in data["skipped"]["too long"] and "too long" not in data["results"]


def test_a_measurement_past_the_budget_is_cut_off(tmp_path):
    report = gpu_check.Report(tmp_path / "g.json", {})
    report.record("stuck", lambda: time.sleep(30) or {}, gpu_check.Guard(budget_s=2), needs_s=0)
    assert report.data["errors"]["stuck"].startswith("TimeoutError")
