"""`vidistill eval actions`: encoders judged by a robot log's own actions, on held-out episodes.

Logs are written by the real writers (robomimic HDF5 with h5py, LeRobot v3.0 with PyAV + pyarrow,
ALOHA HDF5); encoders are cpu-tiny exports made by the real exporter (runtime_fixtures)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import write_lerobot_v30
from robot_log_fixtures import write_aloha, write_robomimic
from runtime_fixtures import artefacts  # noqa: F401 (session fixture)

from vidistill import cli
from vidistill.data.sources import discover
from vidistill.eval.actions import (
    RANDOM_INIT,
    ActionProbeSettings,
    action_probe,
    fit_ridge,
    split_episodes,
    with_history,
)

EPISODES, FRAMES = 5, 16


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny batches: one intra-op thread is as fast, and far faster on busy shared cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def feature_cache(tmp_path_factory):
    """One feature cache for the module: an encoder's features of a log are computed once."""
    return tmp_path_factory.mktemp("action_features")


def colour_episodes(seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Frames of one slowly drifting colour (plus noise) and, as the action, their mean colour:
    a target that is exactly a linear function of the pixels."""
    rng = np.random.default_rng(seed)
    images, actions = [], []
    for _ in range(EPISODES):
        colour = np.clip(128 + np.cumsum(rng.normal(0, 16, (FRAMES, 3)), 0), 10, 245)
        im = np.broadcast_to(colour[:, None, None, :], (FRAMES, 48, 64, 3))
        im = np.clip(im + rng.normal(0, 4, im.shape), 0, 255).astype(np.uint8)
        images.append(im)
        actions.append((im.reshape(FRAMES, -1, 3).mean(1) / 255).astype(np.float32))
    return images, actions


@pytest.fixture(scope="module")
def colour_log(tmp_path_factory):
    """robomimic HDF5: ``actions`` = the mean colour of each frame; ``obs/shuffled`` = the same
    values permuted across all frames (no relation to what is seen)."""
    images, actions = colour_episodes()
    every = np.concatenate(actions)
    shuffled = np.split(every[np.random.default_rng(1).permutation(len(every))], EPISODES)
    return write_robomimic(tmp_path_factory.mktemp("action_logs") / "colours.hdf5", [FRAMES] * EPISODES,
                           images=images, actions=actions, low_dim={"shuffled": shuffled})


@pytest.fixture
def settings(feature_cache):
    return lambda **kw: ActionProbeSettings(cache=str(feature_cache / "action_features"), **kw)


# ------------------------------------------------------------------------------ the readout
def test_split_holds_out_whole_episodes_seeded():
    train, test = split_episodes(10, 0.2, seed=3)
    assert len(test) == 2 and sorted(train + test) == list(range(10))
    assert split_episodes(10, 0.2, seed=3) == (train, test)
    assert split_episodes(10, 0.2, seed=4) != (train, test)
    assert split_episodes(2, 0.9, seed=0)[0] and split_episodes(2, 0.01, seed=0)[1]  # one each at least


def test_history_stacks_previous_frames_repeating_the_first():
    f = np.arange(8.0).reshape(4, 2)
    h = with_history(f, 3)
    assert h.shape == (4, 6)
    assert h[0].tolist() == [0, 1, 0, 1, 0, 1] and h[3].tolist() == [6, 7, 4, 5, 2, 3]


def test_ridge_penalty_is_chosen_on_training_episodes():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 10))
    groups = np.repeat(np.arange(4), 30)
    clean = fit_ridge(x, x @ rng.normal(size=(10, 2)), groups)
    noisy = fit_ridge(x, rng.normal(size=(120, 2)), groups)
    assert clean.penalty < noisy.penalty  # pure noise is best fitted by (almost) nothing


# ------------------------------------------------------------------------------ end to end
def test_planted_linear_target_scores_near_one_and_shuffled_near_zero(colour_log, artefacts, settings):  # noqa: F811
    report = action_probe([artefacts["export"]], colour_log, settings(targets=("actions", "obs/shuffled")))
    assert [r["encoder"] for r in report["rows"]] == [RANDOM_INIT, str(artefacts["export"])]
    assert report["targets"] == {"actions": 3, "obs/shuffled": 3}
    for row in report["rows"]:  # both see the colour: it is in every patch
        planted, shuffled = row["targets"]["actions"], row["targets"]["obs/shuffled"]
        assert planted["r2"] > 0.9 and min(planted["r2_per_dim"]) > 0.8, (row["encoder"], planted)
        assert planted["nmse"] < 0.15 and planted["knn_error"] < shuffled["knn_error"]
        assert -1 < shuffled["r2"] < 0.2 and shuffled["nmse"] > 0.8, (row["encoder"], shuffled)  # no skill
    split = report["split"]
    assert len(split["test"]) == 1 and len(split["train"]) == EPISODES - 1
    assert not set(split["train"]) & set(split["test"])


def test_lerobot_state_target_history_and_cache(tmp_path, artefacts, settings, caplog):  # noqa: F811
    rng = np.random.default_rng(0)
    lengths = [9, 12, 7]
    state = [rng.normal(size=(n, 4)).astype(np.float32) for n in lengths]
    log_root = write_lerobot_v30(tmp_path / "ds", lengths, cameras=["observation.images.top"], state=state)
    src = next(s for s in discover([log_root]).sources if s.episode == "1" and s.camera == "observation.images.top")
    assert src.targets.names() == ["action", "observation.state"]
    assert np.allclose(src.targets.read("observation.state"), state[1])  # rows in frame order

    opts = settings(targets=("observation.state", "action"), camera="observation.images.top", history=2, stride=2)
    report = action_probe([artefacts["export"]], log_root, opts)
    assert report["targets"] == {"observation.state": 4, "action": 2}
    row = report["rows"][1]
    assert row["feature_dim"] == 2 * 2 * 192  # ([CLS] + mean patch) x 2 frames
    assert row["targets"]["observation.state"]["dims_scored"] == 4
    assert row["targets"]["action"]["r2"] is None  # constant in the fixture: nothing to score
    caplog.set_level("INFO")
    again = action_probe([artefacts["export"]], log_root, opts)
    assert "features of all 3 episodes from the cache" in caplog.text
    assert again["rows"][1]["targets"] == row["targets"]


def test_info_lists_what_a_log_records_beside_its_frames(tmp_path):
    from vidistill.data.info import summary

    text = summary(str(write_robomimic(tmp_path / "r.hdf5", [5, 6])))
    assert "recorded beside the frames: actions, obs/robot0_eef_pos" in text


def test_targets_of_aloha_and_robomimic(tmp_path):
    aloha = discover([write_aloha(tmp_path / "episode_0.hdf5", 6)]).sources[0]
    assert aloha.targets.names() == ["action", "observations/qpos"] and aloha.targets.action_name() == "action"
    assert aloha.targets.read("observations/qpos").shape == (6, 14)
    robomimic = discover([write_robomimic(tmp_path / "r.hdf5", [5, 6])]).sources[1]
    assert robomimic.targets.names() == ["actions", "obs/robot0_eef_pos"]
    assert robomimic.targets.action_name() == "actions"
    assert robomimic.targets.read("obs/robot0_eef_pos").shape == (6, 3)


# ------------------------------------------------------------------------------ the CLI
def run(*argv) -> int:
    return cli.main(["eval", "actions", *map(str, argv)])


def test_cli_prints_one_table_and_writes_the_json(colour_log, artefacts, feature_cache, tmp_path, capsys,  # noqa: F811
                                                  monkeypatch):
    monkeypatch.setenv("VIDISTILL_CACHE", str(feature_cache))  # the features the other tests cached
    out = tmp_path / "report.json"
    assert run(artefacts["export"], artefacts["run"], "--data", colour_log, "--json", out,
               "--seed", 2, "--holdout", 0.4) == 0
    table = capsys.readouterr().out
    assert table.count(RANDOM_INIT) == 1 and "actions R²" in table and str(artefacts["run"]) in table
    report = json.loads(out.read_text())
    assert report["split"]["seed"] == 2 and len(report["split"]["test"]) == 2
    assert len(report["rows"]) == 3
    for row in report["rows"]:
        assert set(row["targets"]["actions"]) >= {"r2", "r2_per_dim", "nmse", "knn_error"}
    assert len(list((feature_cache / "action_features").iterdir())) >= 3  # one folder per encoder


def bad_logs(tmp_path, make_video):
    images, actions = colour_episodes()
    videos = tmp_path / "videos"
    videos.mkdir()
    make_video(videos / "a.mp4", 10)
    make_video(videos / "b.mp4", 10)
    short = [a[:-1] for a in actions]
    return {
        "no actions": (videos, [], "records no actions or state beside its frames"),
        "unknown target": (write_robomimic(tmp_path / "ok.hdf5", [FRAMES] * 2, images=images[:2],
                                           actions=actions[:2]), ["--target", "obs/gripper"],
                           "no target 'obs/gripper'"),
        "length": (write_robomimic(tmp_path / "short.hdf5", [FRAMES] * 2, images=images[:2], actions=short[:2]),
                   [], f"target 'actions' has {FRAMES - 1} rows but camera agentview_image has {FRAMES} frames"),
        "one episode": (write_robomimic(tmp_path / "one.hdf5", [FRAMES], images=images[:1], actions=actions[:1]),
                        [], "holding out whole episodes needs at least 2"),
    }


@pytest.mark.parametrize("case", ["no actions", "unknown target", "length", "one episode", "encoder"])
def test_cli_bad_input_exit_2_and_nothing_written(case, artefacts, tmp_path, capsys, make_video, monkeypatch):  # noqa: F811
    monkeypatch.setenv("VIDISTILL_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out" / "report.json"
    logs = bad_logs(tmp_path, make_video)
    encoder = artefacts["export"]
    if case == "encoder":
        data, extra, message = logs["unknown target"][0], [], "cannot be loaded"
        encoder = tmp_path / "not_an_encoder"
        encoder.mkdir()
        (encoder / "notes.txt").write_text("hello")
    else:
        data, extra, message = logs[case]
    assert run(encoder, "--data", data, "--json", out, *extra) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    if case == "unknown target":
        assert "targets it has: actions, obs/robot0_eef_pos" in err
    assert not out.exists() and not (tmp_path / "cache").exists()
