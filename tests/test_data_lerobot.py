"""LeRobot datasets v2.1 and v3.0 (written as LeRobot lays them out, AV1 g=2 like LeRobot), read
without the lerobot package: one source per episode x camera, exact frames at episode
boundaries, --camera, `vidistill info`, extract/train, and every bad input."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import lerobot_code, pattern_frame, write_lerobot_v30
from robot_log_fixtures import assert_colours

from vidistill.config import build_config
from vidistill.data.cache import extract_cache
from vidistill.data.dataset import build_dataset
from vidistill.data.info import summary
from vidistill.data.sources import discover, discover_sources
from vidistill.errors import VideoError

ROOT = Path(__file__).resolve().parents[1]
TOP, SIDE, WRIST = "observation.images.top", "observation.images.side", "observation.images.wrist"


def codes(src, frame_code, indices=None) -> list[int]:
    return [frame_code(src.read(i)) for i in (range(len(src)) if indices is None else indices)]


def by(sources, camera: str) -> dict[int, object]:
    return {int(s.episode): s for s in sources if s.camera == camera}


def test_v21_one_source_per_episode_and_camera(lerobot_v21, frame_code):
    found = discover([lerobot_v21])
    assert found.formats == {str(lerobot_v21): "lerobot v2.1"}
    assert [(s.camera, s.episode, len(s)) for s in found.sources] == [
        (TOP, "0", 9), (WRIST, "0", 9), (TOP, "1", 12), (WRIST, "1", 12)]
    assert found.sources[0].name == f"v21/{TOP}/episode_000000"
    assert any("observation.images.depth: depth map" in line for line in found.skipped)
    for camera in (TOP, WRIST):  # the AV1 video and the PNG-in-parquet image camera
        episodes = by(found.sources, camera)
        assert codes(episodes[0], frame_code) == [lerobot_code(0, i) for i in range(9)]
        # Random order, across the episode boundary (last of 0, first of 1).
        assert codes(episodes[1], frame_code, [11, 0, 5, 1]) == [lerobot_code(1, i) for i in (11, 0, 5, 1)]
        assert codes(episodes[0], frame_code, [8]) == [lerobot_code(0, 8)]
        assert episodes[0].read(3).dtype == np.uint8 and episodes[0].read(3).shape == (96, 128, 3)
    assert by(found.sources, TOP)[0].describe()["codec"] == "av1"
    wrist = by(found.sources, WRIST)[1]  # PNG in parquet: lossless, in its own colours
    assert_colours(wrist.read(4), pattern_frame(lerobot_code(1, 4)), "v2.1 PNG image camera")


def test_v30_concatenated_files_with_per_camera_offsets(lerobot_v30, frame_code):
    found = discover([lerobot_v30])
    assert found.formats == {str(lerobot_v30): "lerobot v3.0"}
    assert sorted({s.camera for s in found.sources}) == [SIDE, TOP, WRIST]
    for camera in (TOP, SIDE, WRIST):
        episodes = by(found.sources, camera)
        assert {e: len(s) for e, s in episodes.items()} == {0: 9, 1: 12, 2: 7}
        for e, src in episodes.items():
            order = np.random.default_rng(e).permutation(len(src)).tolist()
            assert codes(src, frame_code, order) == [lerobot_code(e, i) for i in order], (camera, e)
    # Inside one concatenated file: episode 1 starts at file frame 9 (top) and 12 (side: 3 frames
    # of another recording first); episode 2 is frame 0 of file-001.
    wrist = by(found.sources, WRIST)[2]
    assert_colours(wrist.read(6), pattern_frame(lerobot_code(2, 6)), "v3.0 PNG image camera")
    top, side = by(found.sources, TOP), by(found.sources, SIDE)
    assert (top[1].path, top[1].first) == (top[0].path, 9) and side[1].first == 12
    assert top[2].path.endswith("file-001.mp4") and top[2].first == 0
    # Reading across the boundary in both directions stays in its episode.
    assert codes(top[0], frame_code, [8]) + codes(top[1], frame_code, [0]) + codes(top[0], frame_code, [7]) == [
        lerobot_code(0, 8), lerobot_code(1, 0), lerobot_code(0, 7)]
    with pytest.raises(IndexError):
        top[0].read(9)


def test_clips_never_cross_episodes_or_cameras(lerobot_v30, frame_code):
    cfg = build_config("cpu-tiny", overrides={"data.videos": [str(lerobot_v30)], "data.frame_stride": 3,
                                              "data.num_workers": 0})
    ds = build_dataset(cfg)
    assert len(ds.sources) == 9
    for clip in range(len(ds)):
        source, frames = ds.index.frames(clip)
        got = [frame_code(f) for f in ds.frames(clip)]
        episode = int(ds.sources[source].episode)
        assert got == [lerobot_code(episode, i) for i in frames]


def test_camera_selection(lerobot_v30, lerobot_v21):
    only = discover_sources([lerobot_v30], cameras=[SIDE])
    assert {s.camera for s in only} == {SIDE} and len(only) == 3
    both = discover_sources([lerobot_v30, lerobot_v21], cameras=[TOP, WRIST])
    assert len(both) == 6 + 4
    with pytest.raises(VideoError, match=rf"no camera named cam_high; cameras found: {SIDE}, {TOP}, {WRIST}"):
        discover_sources([lerobot_v30], cameras=["cam_high"])


def test_info_reports_format_cameras_and_skipped(lerobot_v30):
    text = summary(str(lerobot_v30))
    assert "lerobot v3.0" in text and "episodes: 3" in text and "frames: 84" in text
    assert "observation.images.top" in text and " 3       28     30      128x96  av1" in text
    assert "png in parquet" in text
    assert "observation.images.depth: depth map" in text


@pytest.mark.skipif(not (ROOT / "vidistill" / "cli.py").exists(), reason="needs the source tree")
def test_cli_info_and_its_errors(tmp_path, lerobot_v21):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def run(*args):
        return subprocess.run([sys.executable, "-m", "vidistill", "info", *args], capture_output=True, text=True,
                              cwd=ROOT, env=env, timeout=120)

    ok = run(str(lerobot_v21), "--camera", TOP)
    assert ok.returncode == 0, ok.stderr
    assert "lerobot v2.1" in ok.stdout and TOP in ok.stdout and WRIST not in ok.stdout.split("skipped")[0]
    bad = run(str(lerobot_v21), "--camera", "cam_high")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert f"no camera named cam_high; cameras found: {TOP}, {WRIST}" in bad.stderr


def test_extract_then_train_from_the_cache_keeps_episode_and_camera(tmp_path, lerobot_v30, frame_code):
    cache = tmp_path / "cache"
    extract_cache([lerobot_v30], cache, workers=1, progress=False, cameras=[TOP])
    cached = discover_sources([cache])
    assert [(s.camera, s.episode, len(s)) for s in cached] == [(TOP, "0", 9), (TOP, "1", 12), (TOP, "2", 7)]
    assert codes(cached[1], frame_code, [0, 11]) == [lerobot_code(1, 0), lerobot_code(1, 11)]


# ----------------------------------------------------------------------------- bad input
def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_missing_or_broken_info_json(tmp_path, lerobot_v21):
    root = copy(lerobot_v21, tmp_path / "ds")
    info = root / "meta" / "info.json"
    info.write_text("{not json")
    with pytest.raises(VideoError, match=r"meta/info.json: not valid JSON"):
        discover_sources([root])
    info.write_text(json.dumps({"codebase_version": "v1.6", "fps": 30, "features": {}}))
    with pytest.raises(VideoError, match=r"codebase_version 'v1.6' is not supported"):
        discover_sources([root])
    info.unlink()
    with pytest.raises(VideoError, match=r"meta/info.json: missing"):
        discover_sources([root])


def test_missing_videos(tmp_path, lerobot_v21, caplog, frame_code):
    root = copy(lerobot_v21, tmp_path / "ds")
    (root / f"videos/chunk-000/{TOP}/episode_000001.mp4").unlink()
    with caplog.at_level(logging.WARNING):
        found = discover([root])
    assert sorted(int(s.episode) for s in found.sources if s.camera == TOP) == [0]
    assert "1 video file(s) of observation.images.top missing" in caplog.text
    assert any("episode video(s) missing" in line for line in found.skipped)
    shutil.rmtree(root / "videos")
    with pytest.raises(VideoError, match=rf"videos of {TOP} missing \(2 files, e.g. .*episode_000000.mp4\)"):
        discover_sources([root])


@pytest.mark.parametrize("how", ["column missing", "null"])
def test_v30_episode_without_from_timestamp_is_an_error_naming_the_file(tmp_path, lerobot_v30, how):
    """Without it every episode of a concatenated file would silently read from frame 0."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = copy(lerobot_v30, tmp_path / "ds")
    meta = root / "meta/episodes/chunk-000/file-000.parquet"
    table = pq.read_table(meta)
    column = f"videos/{SIDE}/from_timestamp"
    if how == "null":
        values = table.column(column).to_pylist()
        table = table.set_column(table.schema.get_field_index(column), column,
                                 pa.array([values[0], None, values[2]], pa.float64()))
    else:
        table = table.drop_columns([column])
    pq.write_table(table, meta)
    episode = 1 if how == "null" else 0
    with pytest.raises(VideoError, match=rf"{meta}: episode {episode} has no videos/{SIDE}/from_timestamp"):
        discover_sources([root])
    assert len(discover_sources([root], cameras=[TOP])) == 3  # the other camera still reads


def test_truncated_v30_video_trains_on_what_reads(tmp_path, caplog, frame_code):
    root = write_lerobot_v30(tmp_path / "ds", [9, 12], image_camera=None, faststart=True)
    video = root / f"videos/{TOP}/chunk-000/file-000.mp4"  # cut off: the last episode loses its tail
    data = video.read_bytes()
    video.write_bytes(data[: int(len(data) * 0.8)])
    with caplog.at_level(logging.WARNING):
        found = discover([root])
    episodes = by(found.sources, TOP)
    assert len(episodes[0]) == 9 and 0 < len(episodes[1]) < 12
    assert "truncated" in caplog.text
    assert any("do not decode (truncated video)" in line for line in found.skipped)
    last = len(episodes[1]) - 1
    assert codes(episodes[1], frame_code, [last, 0]) == [lerobot_code(1, last), lerobot_code(1, 0)]


def test_info_command_imports_cheaply():
    code = "import sys, vidistill.data.info; print('cv2' in sys.modules, 'av' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.split() == ["False", "False", "False"]
