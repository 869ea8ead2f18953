"""HDF5 episode files written by h5py in the layouts robot teams use (robomimic, ALOHA raw and
JPEG-padded with a float compress_len, any other layout): exact random access across demo and
camera boundaries, --camera, --fps, every bad input, `vidistill info`, a 2-step `vidistill train`
with a DataLoader worker (each process opens the file itself)."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import cv2
import h5py
import numpy as np
import pytest
from robot_log_fixtures import assert_colours, code, frame, write_aloha, write_generic_h5, write_robomimic

from vidistill.data.sources import discover_sources
from vidistill.data.sources.discovery import discover
from vidistill.data.sources.hdf5 import Hdf5Source
from vidistill.errors import VideoError

CAMERAS = ("agentview_image", "robot0_eye_in_hand_image")


@pytest.fixture(scope="module")
def robomimic(tmp_path_factory):
    # demo_10 is written before demo_2: the reader must order demos by number, not by name.
    path = tmp_path_factory.mktemp("robomimic") / "lift_image.hdf5"
    return write_robomimic(path, [20, 26, 18], CAMERAS, demo_ids=[0, 10, 2])


def check_exact(src, stream: int, frame_code) -> None:
    order = np.random.default_rng(1).permutation(len(src)).tolist() + [0, len(src) - 1]
    for i in order:
        image = src.read(i)
        assert image.dtype == np.uint8 and image.shape == (48, 64, 3)
        assert frame_code(image) == code(stream, i), f"{src.name}: frame {i}"
        assert_colours(image, frame(stream, i), f"{src.name}: frame {i}")


def test_robomimic_one_source_per_demo_and_camera(robomimic, frame_code):
    found = discover([robomimic])
    sources = found.sources
    assert [(s.episode, s.camera) for s in sources] == [(d, c) for d in ("demo_0", "demo_2", "demo_10") for c in CAMERAS]
    assert [len(s) for s in sources] == [20, 20, 18, 18, 26, 26]
    assert all(isinstance(s, Hdf5Source) and s.kind == "hdf5" for s in sources)
    assert sources[0].name == "lift_image.hdf5:demo_0/agentview_image"
    # Streams were written in numeric demo order: demo k, camera c -> stream 2k + c.
    for stream, src in enumerate(sources):
        check_exact(src, stream, frame_code)
    # Depth observations are skipped, and said so.
    assert len(found.skipped) == 3 and all("agentview_depth: depth map" in line for line in found.skipped)
    # robomimic's env_args carry no control_freq here: no fps unless --fps is given.
    assert sources[0].fps == 0.0
    assert {s.fps for s in discover_sources([robomimic], fps=20)} == {20.0}


def test_robomimic_fps_from_control_freq(tmp_path):
    path = write_robomimic(tmp_path / "freq.hdf5", [10])
    with h5py.File(path, "a") as f:
        f["data"].attrs["env_args"] = json.dumps({"env_name": "Lift", "env_kwargs": {"control_freq": 20}})
    assert discover_sources([path])[0].fps == 20.0
    assert discover_sources([path], fps=15)[0].fps == 15.0  # --fps wins


@pytest.mark.parametrize("compressed", [False, True], ids=["raw", "jpeg_padded"])
def test_aloha_episodes(tmp_path, compressed, frame_code):
    root = tmp_path / "aloha"
    root.mkdir()
    for ep in range(2):
        write_aloha(root / f"episode_{ep}.hdf5", 24 + ep, cameras=("cam_high", "cam_left_wrist"), compressed=compressed)
    if compressed:
        with h5py.File(root / "episode_0.hdf5") as f:
            assert f["compress_len"].dtype == np.float32 and f["observations/images/cam_high"].ndim == 2
    sources = discover_sources([root])
    assert [(s.episode, s.camera, len(s)) for s in sources] == [
        ("aloha/episode_0.hdf5", "cam_high", 24), ("aloha/episode_0.hdf5", "cam_left_wrist", 24),
        ("aloha/episode_1.hdf5", "cam_high", 25), ("aloha/episode_1.hdf5", "cam_left_wrist", 25),
    ]
    assert {s.describe()["codec"] for s in sources} == {"jpeg/png bytes" if compressed else "raw uint8"}
    for n, src in enumerate(sources):
        check_exact(src, n % 2, frame_code)
    (wrist,) = discover_sources([root / "episode_1.hdf5"], cameras=["cam_left_wrist"])
    assert frame_code(wrist.read(24)) == code(1, 24)


def test_variable_length_jpeg_camera(tmp_path, frame_code):
    """Some ACT-style recorders store each frame's JPEG as a variable-length byte array (encoded
    the ACT way: the RGB array straight into cv2.imencode)."""
    path = tmp_path / "episode_7.hdf5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("observations/images/cam_high", (18,), dtype=h5py.vlen_dtype(np.uint8))
        for i in range(18):
            ds[i] = cv2.imencode(".jpg", frame(2, i), [cv2.IMWRITE_JPEG_QUALITY, 95])[1].ravel()
    (src,) = discover_sources([path])
    assert (src.camera, len(src), src.size) == ("cam_high", 18, (64, 48))
    check_exact(src, 2, frame_code)


def test_generic_layout_and_a_dataset_named_explicitly(tmp_path, frame_code):
    path = write_generic_h5(tmp_path / "custom.h5", {"episodes/0/front": (20, 0), "episodes/1/front": (22, 1)})
    with h5py.File(path, "a") as f:  # a grey camera the generic rule does not pick up by itself
        f.create_dataset("episodes/0/wrist_grey", data=np.zeros((12, 48, 64), np.uint8))
    sources = discover_sources([path])
    assert [(s.episode, s.camera, len(s)) for s in sources] == [("episodes/0", "front", 20), ("episodes/1", "front", 22)]
    check_exact(sources[0], 0, frame_code)
    check_exact(sources[1], 1, frame_code)
    (grey,) = discover_sources([path], cameras=["episodes/0/wrist_grey"])
    assert grey.read(3).shape == (48, 64, 3) and len(grey) == 12


def open_h5_files() -> int:
    return h5py.h5f.get_obj_count(h5py.h5f.OBJ_ALL, h5py.h5f.OBJ_FILE)


def test_files_open_lazily_once_per_process(robomimic, frame_code):
    sources = discover_sources([robomimic])
    sources[0].close()  # earlier tests of this process may have read this file
    before = open_h5_files()
    sources = discover_sources([robomimic])
    assert open_h5_files() == before  # discovery leaves nothing open that a DataLoader fork would inherit
    assert frame_code(sources[5].read(25)) == code(5, 25)
    assert frame_code(sources[0].read(3)) == code(0, 3)
    assert open_h5_files() == before + 1  # all demos x cameras of a file share one handle
    clone = pickle.loads(pickle.dumps(sources[5]))
    assert frame_code(clone.read(24)) == code(5, 24)
    sources[5].close()
    assert open_h5_files() == before
    assert frame_code(sources[5].read(0)) == code(5, 0)  # reopens after close
    sources[5].close()


# ------------------------------------------------------------------------------ bad input
def test_file_without_images_lists_its_keys(tmp_path):
    path = tmp_path / "proprio.hdf5"
    with h5py.File(path, "w") as f:
        f.create_dataset("action", data=np.zeros((10, 7)))
        f.create_dataset("observations/qpos", data=np.zeros((10, 14)))
    with pytest.raises(VideoError, match=r"proprio.hdf5: no image datasets.*action \(10, 7\) float64.*observations/qpos"):
        discover_sources([path])


def test_named_dataset_that_is_not_images(tmp_path):
    path = write_generic_h5(tmp_path / "x.h5", {"rgb": (20, 0)})
    with pytest.raises(VideoError, match=r"x.h5: dataset meta/joint_positions cannot be read as images.*float64"):
        discover_sources([path], cameras=["meta/joint_positions"])


def test_unknown_camera_lists_those_there(robomimic):
    with pytest.raises(VideoError, match="no camera named cam_high.*agentview_image"):
        discover_sources([robomimic], cameras=["cam_high"])


def test_not_hdf5(tmp_path):
    path = tmp_path / "fake.hdf5"
    path.write_text("not an hdf5 file")
    with pytest.raises(VideoError, match="fake.hdf5: not a readable HDF5 file"):
        discover_sources([path])


def test_padded_bytes_that_are_not_images(tmp_path):
    path = tmp_path / "episode_0.hdf5"
    with h5py.File(path, "w") as f:
        f.create_dataset("observations/images/cam_high", data=np.full((5, 100), 7, np.uint8))
    with pytest.raises(VideoError, match="episode_0.hdf5: /observations/images/cam_high: its first image does not decode"):
        discover_sources([path])


# ------------------------------------------------------------------------------------ CLI
def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "vidistill", *args], capture_output=True, text=True, timeout=300)


def test_cli_info_on_hdf5(robomimic):
    r = run_cli("info", str(robomimic))
    assert r.returncode == 0, r.stderr
    for text in ("hdf5 robomimic", "sources: 6", "episodes: 3", "agentview_image", "robot0_eye_in_hand_image",
                 "64x48", "raw uint8", "demo_10/obs/agentview_depth: depth map"):
        assert text in r.stdout, text
    # HDF5 records no frame rate: shown as unknown, not as 0 fps, with what --fps does.
    assert "agentview_image                        3       64      ?" in r.stdout
    assert "fps ?: the log records no frame rate" in r.stdout
    r = run_cli("info", str(robomimic), "--fps", "20", "--camera", "agentview_image")
    assert r.returncode == 0, r.stderr
    assert "fps ?" not in r.stdout
    assert "agentview_image                        3       64     20" in r.stdout
    assert "robot0_eye_in_hand_image" not in r.stdout


def test_cli_extract_hdf5_to_the_jpeg_cache(tmp_path, frame_code):
    episode = write_aloha(tmp_path / "episode_0.hdf5", 20, compressed=True)
    cache = tmp_path / "cache"
    r = run_cli("extract", "--video", str(episode), "--output", str(cache), "--workers", "1", "--no-progress",
                "--fps", "50")
    assert r.returncode == 0, r.stderr
    sources = discover_sources([cache])
    assert [(s.camera, len(s), s.fps) for s in sources] == [("cam_high", 20, 50.0), ("cam_low", 20, 50.0)]
    assert frame_code(sources[1].read(19)) == code(1, 19)
    assert_colours(sources[1].read(19), frame(1, 19), "the cache of a compressed ALOHA episode")


def test_cli_bad_hdf5_is_a_clear_error(tmp_path):
    path = tmp_path / "proprio.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("action", data=np.zeros((10, 7)))
    r = run_cli("extract", "--video", str(path), "--output", str(tmp_path / "cache"), "--no-progress")
    assert r.returncode != 0 and "Traceback" not in r.stderr and "no image datasets" in r.stderr


def test_cli_trains_two_steps_on_hdf5_with_a_worker(robomimic, tmp_path):
    out = tmp_path / "run"
    r = run_cli("train", "--video", str(robomimic), "--output", str(out), "--max-steps", "2",
                "--preset", "cpu-tiny", "--frame-stride", "4", "--batch-size", "2", "--global-size", "32",
                "--out-dim", "64", "--num-workers", "1", "--set", "data.local_size=16",
                "--set", "model.head_hidden_dim=64", "--fps", "20")
    assert r.returncode == 0, r.stderr
    assert len((out / "log.jsonl").read_text().splitlines()) == 2
    assert "fps: 20.0" in (out / "config.yaml").read_text()
