"""The benchmark suite: goal evaluation, table / Markdown / JSON output on synthetic rows (no real
benchmarking), a skipped and a failing sub-benchmark, and bench_flops on a tiny model."""

from __future__ import annotations

import json
import math
import sys
import types

import pytest

from benchmarks import suite
from benchmarks.suite import Bench, Goal, Line

NAN = float("nan")

TRAIN_ROWS = [
    {"bench": "train_step", "what": "method step (K=3, L=5)", "device": "cpu", "batch": 4, "seconds": 0.40,
     "clips_per_s": 10.0, "peak_gib": NAN},
    {"bench": "train_step", "what": "DINO step (same views)", "device": "cpu", "batch": 4, "seconds": 0.25,
     "clips_per_s": 16.0, "peak_gib": NAN},
    {"bench": "train_step", "what": "ratio method/DINO (goal <= 1.3)", "ratio": 1.6},
    {"bench": "train_step", "what": "part: backbone fwd+bwd", "seconds": 0.2, "ratio": 0.5},
    {"bench": "train_step", "what": "part: predictor fwd+bwd", "seconds": 0.02, "ratio": 0.05},
    {"bench": "train_step", "what": "part: dense_head fwd+bwd", "seconds": 0.04, "ratio": 0.1},
]
DATA_ROWS = [
    {"bench": "data", "case": "floor (read+imdecode K jpegs)", "ms_per_clip": 1.0, "clips_per_s": 1000.0,
     "x_floor": 1.0, "frames_per_clip": 3, "video": "256x192 mp4v, 300 frames"},
    {"bench": "data", "case": "cache frames", "ms_per_clip": 1.2, "clips_per_s": 833.3, "x_floor": 1.2},
    {"bench": "data", "case": "video frames", "ms_per_clip": 4.8, "clips_per_s": 208.3, "x_floor": 4.8},
    {"bench": "data", "case": "cache clip (frames+views)", "ms_per_clip": 3.0, "clips_per_s": 333.3, "x_floor": 3.0},
    {"bench": "data", "case": "video clip (frames+views)", "ms_per_clip": 6.0, "clips_per_s": 166.7, "x_floor": 6.0},
    {"bench": "data", "case": "extract (1 process)", "ms_per_clip": None, "clips_per_s": None, "x_floor": None,
     "frames_per_s": 1800.0},
]
INFERENCE_ROWS = [
    {"backend": "torch eager", "device": "cpu", "batch": 1, "latency_ms": 100.0, "throughput": 10.0,
     "speedup_vs_torch": 1.0},
    {"backend": "onnxruntime", "device": "cpu", "batch": 1, "latency_ms": 40.0, "throughput": 25.0,
     "speedup_vs_torch": 2.5},
    {"backend": "torch eager", "device": "cpu", "batch": 32, "latency_ms": 2000.0, "throughput": 16.0,
     "speedup_vs_torch": 1.0},
    {"backend": "onnxruntime", "device": "cpu", "batch": 32, "latency_ms": 1600.0, "throughput": 20.0,
     "speedup_vs_torch": 1.25},
]
ADAPTER_ROWS = [
    {"bench": "wrapper", "backend": "onnx", "device": "cpu", "env_step_ms": 0.05, "encode_ms": 6.0,
     "env_step_plus_encode_ms": 6.05, "wrapped_step_ms": 6.1, "ratio": 1.01, "goal": 1.05},
    {"bench": "vector", "backend": "onnx", "device": "cpu", "num_envs": 1, "encode_per_env_ms": 6.0,
     "wrapped_step_per_env_ms": 6.1, "ratio": 1.0, "goal": None},
    {"bench": "vector", "backend": "onnx", "device": "cpu", "num_envs": 8, "encode_per_env_ms": 2.0,
     "wrapped_step_per_env_ms": 2.1, "ratio": 0.33, "goal": 0.4},
]
FLOPS_ROWS = [
    {"bench": "flops", "device": "cpu", "threads": 2, "case": "matmul peak fp32", "dtype": "fp32", "matmul_n": 2048,
     "matmul_gflops_by_n": {"2048": 100.0}, "gflops_per_s": 100.0},
    {"bench": "flops", "device": "cpu", "threads": 2, "case": "forward ViT-S/16 224 fp32", "model": "ViT-S/16 224",
     "arch": "vit_small_patch16_224", "image_size": 224, "dtype": "fp32", "batch": 4, "gflop_per_image": 9.2,
     "gflop_per_image_analytic": 9.2, "ms_per_batch": 736.0, "images_per_s": 5.4, "gflops_per_s": 50.0,
     "peak_gflops_per_s": 100.0, "fraction_of_peak": 0.5},
]


def ok(rows):
    return {"status": "ok", "rows": rows, "seconds": 1.0}


def all_results():
    return {"training": ok(TRAIN_ROWS), "data": ok(DATA_ROWS), "inference": ok(INFERENCE_ROWS),
            "adapters": ok(ADAPTER_ROWS), "flops": ok(FLOPS_ROWS)}


def by_measure(lines, text):
    hits = [line for line in lines if text in line.measure]
    assert len(hits) == 1, (text, [line.measure for line in lines])
    return hits[0]


def test_goal_check():
    assert Goal("<=", 1.3).check(1.3) == "PASS"
    assert Goal("<=", 1.3).check(1.31) == "MISS"
    assert Goal(">=", 2.0).check(2.0) == "PASS"
    assert Goal(">=", 2.0).check(1.99) == "MISS"
    assert Goal(">=", 2.0).check(None) == "-"
    assert Goal("<=", 1.3).check(NAN) == "-"
    assert str(Goal("<=", 1.3)) == "≤ 1.3×"
    assert Line("x", "no goal", 1.0).result == ""


def test_lines_and_goals_from_synthetic_rows():
    lines = suite.build_lines(all_results())
    assert [line.area for line in lines] == sorted((line.area for line in lines), key=list(suite.BENCHES).index)

    step = by_measure(lines, "clip step vs plain DINO step")
    assert step.value == pytest.approx(1.6) and step.result == "MISS" and str(step.goal) == "≤ 1.3×"
    assert "400 vs 250 ms/step" in step.detail and "batch 4" in step.detail
    assert by_measure(lines, "backbone").value == pytest.approx(0.5)
    data_share = by_measure(lines, "step split: data")
    assert data_share.value == pytest.approx(4 * 3.0 / 400.0)  # batch x cache clip ms / step ms
    mem = by_measure(lines, "peak memory per clip")
    assert mem.value is None and mem.value_text() == "-" and mem.result == ""

    assert by_measure(lines, "frames only (JPEG cache) vs bare").result == "PASS"  # 1.2 <= 1.5
    full_clip = by_measure(lines, "full clip with views (JPEG cache) vs floor")
    assert full_clip.value == pytest.approx(3.0) and full_clip.result == "MISS"
    assert by_measure(lines, "from video vs from JPEG cache, frames only").value == pytest.approx(4.0)
    assert by_measure(lines, "from video vs from JPEG cache, full clip").value == pytest.approx(2.0)

    b1, b32 = by_measure(lines, "batch 1 "), by_measure(lines, "batch 32 ")
    assert (b1.result, str(b1.goal)) == ("PASS", "≥ 2×")
    assert (b32.result, b32.value, str(b32.goal)) == ("MISS", 1.25, "≥ 1.5×")
    assert by_measure(lines, "TensorRT").value is None  # no CUDA rows: said, not judged

    assert by_measure(lines, "wrapper step").result == "PASS"
    vec = by_measure(lines, "8 envs vs 1")
    assert vec.result == "PASS" and vec.value == pytest.approx(0.33)

    assert by_measure(lines, "fraction of matmul peak").value == pytest.approx(0.5)
    assert by_measure(lines, "fp32 matmul peak").unit == "GFLOP/s"

    s = suite.summary(lines)
    assert s.startswith("goals: 4/7 PASS") and "1.60× (goal ≤ 1.3×, 23% over)" in s
    assert "1.25× (goal ≥ 1.5×, 17% short)" in s


def test_cuda_rows_peak_memory_and_tensorrt():
    train = [dict(r) for r in TRAIN_ROWS]
    train[0]["peak_gib"], train[1]["peak_gib"] = 8.0, 6.0
    train[0]["device"] = "cuda"
    infer = INFERENCE_ROWS + [
        {"backend": "torch eager", "device": "cuda", "batch": 32, "latency_ms": 10.0, "throughput": 3200.0,
         "speedup_vs_torch": 1.0},
        {"backend": "tensorrt engine fp16", "device": "cuda", "batch": 32, "latency_ms": 2.5, "throughput": 12800.0,
         "speedup_vs_torch": 4.0},
    ]
    lines = suite.build_lines({"training": ok(train), "inference": ok(infer)})
    assert by_measure(lines, "peak memory per clip").value == pytest.approx(2.0)
    assert by_measure(lines, "peak memory per clip").value_text() == "2.000 GiB"
    trt = by_measure(lines, "tensorrt engine fp16 vs torch eager, CUDA, batch 32")
    assert trt.value == pytest.approx(4.0)
    assert not [line for line in lines if line.measure == "TensorRT vs torch eager"]
    assert not [line for line in lines if "step split: data" in line.measure]  # no data rows this run


def test_text_and_markdown_tables():
    lines = suite.build_lines(all_results())
    text = suite.format_text(lines).splitlines()
    assert text[0].split()[:5] == ["area", "measure", "value", "goal", "result"]
    assert set(text[1]) == {"-"}
    assert len(text) == len(lines) + 2
    assert any("MISS" in t and "1.60×" in t for t in text)

    md = suite.format_markdown(lines).splitlines()
    assert md[0] == "| area | measure | value | goal | result | detail |"
    assert md[1] == "|---|---|---:|---|---|---|"
    assert len(md) == len(lines) + 2
    assert all(row.startswith("| ") and row.endswith(" |") for row in md[2:])
    assert all(row.count(" | ") == 5 for row in md[2:])  # no stray | inside a cell
    assert any("**MISS**" in row and "≤ 1.3×" in row for row in md)


def test_json_report_round_trip(tmp_path):
    results = all_results()
    lines = suite.build_lines(results)
    report = suite.build_report(results, lines, quick=True, argv=["--only", "training"], machine="test-machine-2c")
    path = suite.write_json(report, tmp_path / "r" / "test-machine-2c.json")  # strict JSON: NaN -> null
    back = json.loads(path.read_text())
    assert back["machine"] == "test-machine-2c" and back["mode"] == "quick"
    assert back["command"] == "python -m benchmarks --only training"
    assert {"python", "torch"} <= set(back["versions"])
    assert back["benchmarks"]["training"]["rows"][0]["peak_gib"] is None
    step = next(t for t in back["table"] if t["measure"].startswith("clip step vs"))
    assert step["goal"] == {"op": "<=", "target": 1.3} and step["result"] == "MISS" and step["value_text"] == "1.60×"
    assert back["timestamp"].endswith("+00:00")


def test_busy_warning():
    assert suite.busy_warning({"a": {"load_before": 0.5, "load_after": 1.9}}, cores=2) == ""
    assert "load average up to 4.2 on 2 cores" in suite.busy_warning({"a": {"load_before": 4.2, "load_after": 1.0}}, 2)
    assert suite.busy_warning({"a": {"status": "skipped"}}, cores=2) == ""


def test_default_output_and_machine_slug():
    assert suite.default_output(True, None, "m").name == "m.json"
    assert suite.default_output(False, None, "m").name == "m-full.json"
    assert suite.default_output(True, ["flops"], "m").name == "m-only-flops.json"
    assert suite.default_output(True, list(suite.BENCHES), "m").name == "m.json"
    slug = suite.machine_slug("Linux", "x86_64", "AMD EPYC 7763 64-Core Processor", 16, "NVIDIA H100 80GB HBM3")
    assert slug == "linux-x86_64-amd-epyc-7763-16c-nvidia-h100-80gb-hbm3"
    assert suite.machine_slug("Linux", "x86_64", "Intel(R) Xeon(R) CPU @ 2.20GHz", 2, None) == "linux-x86_64-intel-xeon-2c"


def test_missing_and_failing_benchmarks_do_not_stop_the_suite(monkeypatch, tmp_path, capsys):
    fake = types.ModuleType("fake_bench_ok")
    fake.run = lambda quick=True: ADAPTER_ROWS
    broken = types.ModuleType("fake_bench_broken")

    def explode(quick=True):
        raise RuntimeError("boom")

    broken.run = explode
    monkeypatch.setitem(sys.modules, "fake_bench_ok", fake)
    monkeypatch.setitem(sys.modules, "fake_bench_broken", broken)
    kw = lambda quick, cuda: {"quick": quick}  # noqa: E731
    monkeypatch.setattr(suite, "BENCHES", {
        "training": Bench("training", "fake_bench_missing_module", "missing", kw),
        "data": Bench("data", "fake_bench_broken", "raises", kw),
        "adapters": Bench("adapters", "fake_bench_ok", "fine", kw),
    })
    out = tmp_path / "suite.json"
    assert suite.main(["--output", str(out), "--markdown"]) == 0
    printed = capsys.readouterr().out
    assert "training: SKIPPED (ModuleNotFoundError" in printed
    assert "data: FAILED (RuntimeError: boom)" in printed
    assert "| adapters | wrapper step vs env step + bare encode | 1.01× | ≤ 1.05× | **PASS** |" in printed
    back = json.loads(out.read_text())
    assert [back["benchmarks"][n]["status"] for n in ("training", "data", "adapters")] == ["skipped", "failed", "ok"]
    assert "not run: training (SKIPPED), data (FAILED)" in back["summary"]


def test_thread_counts_restored_after_a_benchmark(monkeypatch):
    import torch

    before = torch.get_num_threads()
    pin = types.ModuleType("fake_bench_pin")

    def run(quick=True):
        torch.set_num_threads(1)  # what bench_data does
        return []

    pin.run = run
    monkeypatch.setitem(sys.modules, "fake_bench_pin", pin)
    res = suite.run_bench(Bench("x", "fake_bench_pin", "", lambda q, c: {"quick": q}), True, False)
    assert res["status"] == "ok" and torch.get_num_threads() == before


def test_bench_flops_tiny_model():
    from benchmarks import bench_flops

    spec = bench_flops.ModelSpec("vit_tiny_patch16_224", 32, 2, "tiny")
    # one thread: a busy shared machine cannot stall a thread pool's barrier mid-measurement
    rows = bench_flops.run(models=[spec], matmul_sizes=(128, 256), rounds=5, device="cpu", threads=1)
    peaks = [r for r in rows if r["case"].startswith("matmul peak")]
    fwd = [r for r in rows if "fraction_of_peak" in r]
    assert {r["dtype"] for r in peaks} == {r["dtype"] for r in fwd} and "fp32" in {r["dtype"] for r in fwd}
    for r in fwd:
        # a ratio of two timings: only its sign and finiteness are facts on a shared machine
        # (speed goals live in benchmarks/, not in timed tests)
        assert 0 < r["fraction_of_peak"] < math.inf, r
        assert math.isfinite(r["gflops_per_s"]) and r["batch"] == 2
        # FlopCounterMode's count agrees with the analytic one (matmuls + patch conv + attention)
        assert r["gflop_per_image"] == pytest.approx(r["gflop_per_image_analytic"], rel=0.02)
    assert len(bench_flops.format_table(rows).splitlines()) == len(rows) + 1
    suite_lines = suite.flops_lines(rows)
    assert len(suite_lines) == len(rows)
