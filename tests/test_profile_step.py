"""The step profiler (benchmarks/profile_step.py) on a tiny model: every phase is timed, the
forward parts are found inside the objective, and the official-DINO comparison runs when a
facebookresearch/dino checkout is named by VIDISTILL_DINO_CHECKOUT (never downloaded here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks import profile_step

TINY = {"data.num_workers": 0, "model.out_dim": 256, "model.head_hidden_dim": 64, "model.head_bottleneck_dim": 32,
        "data.global_size": 32, "data.local_size": 16, "data.frame_stride": 4, "data.num_local": 2,
        "model.model_args": {"depth": 2}}


def test_breakdown_times_every_phase(make_video, tmp_path):
    video = make_video(tmp_path / "v.mp4", 40)
    r = profile_step.run(None, "cpu-tiny", batch_size=2, steps=2, video=video, overrides=TINY)
    b = r["breakdown"]
    for phase in ("data wait", "teacher forward", "student backbone", "predictor", "student heads", "dense loss",
                  "global loss", "stats stack", "stats sync", "backward", "clip + optimizer", "EMA", "logging",
                  "checkpoint (write / checkpoint_every)", "objective glue (rest of forward)",
                  "representation stats (/ monitor_every)"):
        assert b[phase] >= 0, phase
    # module hooks saw the backbone (forward_features is not a module call) and the losses
    assert b["student backbone"] > 0 and b["dense loss"] > 0 and b["backward"] > 0
    text = profile_step.format_result(r)
    assert "student backbone" in text and "vs" not in r


def test_compute_ceiling_splits_the_step_by_kernel_kind(make_video, tmp_path):
    video = make_video(tmp_path / "v.mp4", 40)
    r = profile_step.run(None, "cpu-tiny", batch_size=2, steps=1, iters=1, video=video, overrides=TINY, ceiling=True)
    c = r["ceiling"]
    assert abs(sum(c["share"].values()) - 1) < 1e-6 and 0 < c["share"]["gemm"] < 1
    assert c["gflop"] > 0 and c["gemm_peak_gflops"] > 0
    assert c["max_speedup_if_only_gemms_left"] > 1  # a ViT step is never only matrix multiplies
    assert "compute ceiling" in profile_step.format_result(r)


@pytest.mark.skipif(not os.environ.get("VIDISTILL_DINO_CHECKOUT"), reason="no facebookresearch/dino checkout named")
def test_official_dino_comparison(make_video, tmp_path):
    video = make_video(tmp_path / "v.mp4", 40)
    r = profile_step.run(Path(os.environ["VIDISTILL_DINO_CHECKOUT"]), "cpu-tiny", batch_size=2, steps=1, iters=1,
                         video=video, overrides=TINY)
    v = r["vs_dino"]
    # the method does DINO's work plus the predictor and the dense head and loss: more FLOPs
    assert v["flop_ratio"] > 1.0 and v["method_s"] > 0 and v["dino_s"] > 0


def test_official_dino_checkout_missing_files(tmp_path):
    with pytest.raises(SystemExit, match="missing main_dino.py"):
        profile_step.load_official_dino(tmp_path)


def test_peak_rss_grows_with_the_batch():
    m = profile_step.peak_rss("cpu-tiny", [1, 8], overrides=TINY)
    assert set(m["peak_rss_gib"]) == {1, 8} and all(0 < v < 64 for v in m["peak_rss_gib"].values())
    if "largest_batch_estimate" in m:  # a straight line through the two: a batch past the larger one
        assert m["largest_batch_estimate"] > 8
