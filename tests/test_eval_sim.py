"""benchmarks/sim_robot: rendered frames, class masks and depth are aligned (needs pybullet)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

pytest.importorskip("pybullet")



def _load(name: str):
    return importlib.import_module(f"benchmarks.sim_robot.{name}")


@pytest.fixture(scope="module")
def render():
    return _load("render")


@pytest.fixture(scope="module")
def scene(render):
    import pybullet as p

    client = p.connect(p.DIRECT)
    sc = render.build_scene(p, client, np.random.default_rng(3))
    yield p, sc
    p.disconnect(client)


def test_frame_mask_and_depth_are_aligned(render, scene):
    p, sc = scene
    size = 96
    traj = render.Trajectory.random(np.random.default_rng(4))
    render.pose_robot(p, sc, traj, 1.0)
    view = p.computeViewMatrixFromYawPitchRoll(**render.HELD_OUT_CAMERA.view_at(1.0))
    proj = render.projection_matrix(p, size)
    rgb, classes, depth = render.render_frame(p, sc, view, proj, size, shadow=False)
    assert rgb.shape == (size, size, 3) and classes.shape == depth.shape == (size, size)
    assert rgb.dtype == np.uint8 and classes.dtype == np.uint8
    present = set(np.unique(classes).tolist())
    assert {render.FLOOR, render.TABLE, render.TRAY, render.ROBOT, render.OBJECT} <= present, present
    assert 0 not in present  # 0 (ignore) is not used by the renderer

    # depth is metric: floor pixels un-project to z = 0, table-top pixels to the table height
    world = render.unproject(depth, view, proj)
    floor_z = world[..., 2][classes == render.FLOOR]
    assert np.percentile(np.abs(floor_z), 95) < 0.002
    table_z = world[..., 2][classes == render.TABLE]
    assert abs(np.median(table_z) - render.TABLE_TOP) < 0.02
    assert (depth[classes == render.BACKGROUND] == 0).all()
    assert (depth[classes != render.BACKGROUND] > render.NEAR).all()

    # the robot mask is where the robot is: hide the robot and only its pixels change
    robot = classes == render.ROBOT
    pos, orn = p.getBasePositionAndOrientation(sc.robot, physicsClientId=sc.client)
    p.resetBasePositionAndOrientation(sc.robot, (30, 30, -30), orn, physicsClientId=sc.client)
    try:
        rgb2, classes2, depth2 = render.render_frame(p, sc, view, proj, size, shadow=False)
    finally:
        p.resetBasePositionAndOrientation(sc.robot, pos, orn, physicsClientId=sc.client)
    assert not (classes2 == render.ROBOT).any()
    behind = depth2[robot]
    closer = (depth[robot] < behind - 0.01) | (behind == 0)  # in front of what is behind it (or sky)
    assert closer.mean() > 0.97
    assert np.abs(depth[~robot] - depth2[~robot]).max() < 1e-3
    assert (classes[~robot] == classes2[~robot]).all()
    changed = np.abs(rgb.astype(int) - rgb2.astype(int)).sum(-1) > 0
    assert changed[~robot].mean() < 0.01
    assert changed[robot].mean() > 0.9


def test_render_cli_writes_the_ade_layout(render, tmp_path):
    m = render.render_benchmark(tmp_path, episodes=1, frames=4, size=64, seed=1, probe_episodes=1,
                                probe_frames=2, shadow=False)
    assert (tmp_path / "manifest.json").is_file()
    assert json.loads((tmp_path / "manifest.json").read_text())["videos"] == m["videos"]
    cap = cv2.VideoCapture(str(tmp_path / m["videos"][0]))
    n = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape == (64, 64, 3)
        n += 1
    assert n == 4
    for split in ("training", "validation"):
        names = sorted(f.name for f in (tmp_path / "probe" / "images" / split).iterdir())
        assert len(names) == 2
        for name in names:
            img = cv2.imread(str(tmp_path / "probe" / "images" / split / name))
            lab = cv2.imread(str(tmp_path / "probe" / "annotations" / split / name), cv2.IMREAD_UNCHANGED)
            dep = cv2.imread(str(tmp_path / "probe" / "depth" / split / name), cv2.IMREAD_UNCHANGED)
            assert img.shape[:2] == lab.shape == dep.shape == (64, 64)
            assert lab.dtype == np.uint8 and dep.dtype == np.uint16
            assert lab.max() <= 6 and dep.max() > 0
    # probe sets A and B are different episodes (different names and layouts)
    a = cv2.imread(str(next((tmp_path / "probe" / "images" / "training").iterdir())))
    b = cv2.imread(str(next((tmp_path / "probe" / "images" / "validation").iterdir())))
    assert not np.array_equal(a, b)


def test_table1_aggregation_and_collapse_summary(tmp_path):
    t1 = _load("table1")
    run = tmp_path / "run"
    run.mkdir()
    lines = [{"step": i, "loss": 8.3, "teacher_entropy": 8.3, "kl": 0.0, "collapsed": i >= 3} for i in range(1, 6)]
    (run / "log.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n{\"step\": 6, \"lo")
    c = t1.collapse_summary(run, out_dim=4096)
    assert c["collapsed"] and c["ever_collapsed"] and c["first_collapsed_step"] == 3 and c["steps"] == 5
    results = [
        {"variant": "Ours (dense+global)", "seed": s, "miou": m, "pixel_accuracy": 50.0, "depth_rmse": 0.5,
         "depth_delta1": 60.0, "collapse": {"collapsed": s == 1}}
        for s, m in ((0, 30.0), (1, 32.0), (2, 34.0))
    ] + [{"variant": "random init", "seed": 0, "miou": 20.0, "pixel_accuracy": 40.0, "depth_rmse": 0.9,
          "depth_delta1": 40.0, "collapse": {"logged": False}}]
    table = t1.aggregate(results)
    assert list(table) == ["random init", "Ours (dense+global)"]  # the paper's row order
    ours = table["Ours (dense+global)"]
    assert ours["miou"]["mean"] == pytest.approx(32.0) and ours["miou"]["std"] == pytest.approx(2.0)
    assert ours["collapsed_runs"] == 1
    text = t1.format_table(table)
    assert "32.0 ± 2.0" in text and "1/3" in text and "random init" in text
    md = t1.format_table(table, markdown=True).splitlines()
    assert md[0].startswith("| Method |") and md[1].startswith("| --- |") and "| 32.0 ± 2.0 |" in md[3]


def test_table1_end_to_end_on_a_tiny_render_trains_probes_and_resumes(tmp_path, capsys):
    t1 = _load("table1")
    data = tmp_path / "data"
    _load("render").render_benchmark(data, episodes=2, frames=12, size=96, seed=2, probe_episodes=1,
                                     probe_frames=4, shadow=False)
    argv = ["--output", str(tmp_path / "t1"), "--data", str(data), "--seeds", "0", "--steps", "2", "--batch", "2",
            "--variants", "random", "ours", "--probe-iters", "5", "--probe-size", "64", "--label-size", "32",
            "--set", "data.frame_stride=2", "--set", "data.num_workers=0", "--set", "model.out_dim=256"]
    assert t1.main([*argv, "--probe-student"]) == 0
    report = json.loads((tmp_path / "t1" / "table1.json").read_text())
    assert list(report["table"]) == ["random init", "Ours (dense+global)"]
    ours = next(r for r in report["runs"] if r["variant"] == "Ours (dense+global)")
    assert ours["collapse"]["logged"] and ours["collapse"]["steps"] == 2
    assert ours["probe_image_size"] == [64, 64] and ours["grid"] == [4, 4]
    assert 0.0 <= ours["miou"] <= 100.0 and ours["depth_rmse"] > 0
    # diagnostics: both backbones moved from the seed's init, the student (lr) more than the EMA teacher
    drift = ours["weight_drift"]
    assert 0.0 < drift["teacher"] < drift["student"]
    assert 0.0 <= ours["student"]["miou"] <= 100.0 and "student_table" in report
    # the preset's own settings (table1.yaml overlays nothing since issue 17)
    cfg = yaml.safe_load((Path(ours["run_dir"]) / "config.yaml").read_text())
    assert cfg["optim"]["momentum_teacher"] == pytest.approx(0.996)
    assert cfg["optim"]["centring"] == "sinkhorn_knopp" and cfg["data"]["colour_strength"] == 0.0
    out = capsys.readouterr().out
    assert "Ours (dense+global)" in out and "STUDENT" in out
    # a rerun reuses the finished runs' results instead of training again
    files = [tmp_path / "t1" / "results" / "ours_s0.json", Path(ours["run_dir"]) / "checkpoint.pt"]
    before = [f.stat().st_mtime_ns for f in files]
    assert t1.main(argv) == 0
    assert [f.stat().st_mtime_ns for f in files] == before


def test_scene_b_and_labelled_training_frames(render, tmp_path):
    a = render.render_benchmark(tmp_path / "a", episodes=1, frames=4, size=64, seed=1, probe_episodes=1,
                                probe_frames=1, shadow=False, labelled_every=2)
    b = render.render_benchmark(tmp_path / "b", episodes=1, frames=4, size=64, seed=1, probe_episodes=1,
                                probe_frames=1, shadow=False, scene="b")
    assert (a["scene"], b["scene"]) == ("a", "b") and a["labelled"]["stills"] == 2 and "labelled" not in b
    names = sorted(f.name for f in (tmp_path / "a" / "labelled" / "images" / "training").iterdir())
    assert names == ["episode_000_00000.png", "episode_000_00002.png"]
    for name in names:  # a labelled frame is the video's frame, with aligned labels and depth
        lab = cv2.imread(str(tmp_path / "a" / "labelled" / "annotations" / "training" / name), cv2.IMREAD_UNCHANGED)
        dep = cv2.imread(str(tmp_path / "a" / "labelled" / "depth" / "training" / name), cv2.IMREAD_UNCHANGED)
        assert lab.shape == dep.shape == (64, 64) and 1 <= lab.min() and lab.max() <= 6 and dep.max() > 0
    # scene B is another scene: other layouts, surfaces, light and camera (same seed, other pixels)
    still = "images/training/a000_0000.png"
    img_a, img_b = (cv2.imread(str(tmp_path / s / "probe" / still)) for s in ("a", "b"))
    assert np.abs(img_a.astype(int) - img_b.astype(int)).mean() > 20
    assert render.episode_seed(1, "train", 0, "b") != render.episode_seed(1, "train", 0, "a")
