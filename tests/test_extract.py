"""The JPEG frame cache: contents, resume, training from it, and the ``vidistill extract`` CLI."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vidistill.cli import COMMANDS
from vidistill.config import build_config
from vidistill.data.cache import extract_cache
from vidistill.data.dataset import build_dataset
from vidistill.data.sources import JpegCacheSource, discover_sources
from vidistill.errors import VideoError

ROOT = Path(__file__).resolve().parents[1]


def index_of(cache: Path) -> dict:
    return json.loads((cache / "index.json").read_text())


def frame_files(cache: Path, entry: dict) -> list[Path]:
    return [cache / entry["pattern"].format(i) for i in range(entry["frames"])]


def test_cache_holds_every_frame_with_an_index(tmp_path, video_file, frame_folder, frame_code):
    cache = tmp_path / "cache"
    extract_cache([video_file, frame_folder], cache, workers=1, progress=False)
    index = index_of(cache)
    assert index["format"] == "vidistill-jpeg-cache" and index["max_side"] == 0
    by_name = {e["name"]: e for e in index["sources"]}
    assert set(by_name) == {"moving.mp4", "cam0"}
    video = by_name["moving.mp4"]
    assert video["path"] == str(video_file) and video["frames"] == 80 and video["complete"] is True
    assert (video["width"], video["height"]) == (128, 96) and video["fps"] == pytest.approx(30.0)
    assert "{" in video["pattern"] and all(p.is_file() for p in frame_files(cache, video))

    sources = discover_sources([cache])
    assert all(isinstance(s, JpegCacheSource) for s in sources)
    originals = discover_sources([video_file, frame_folder])
    for cached, original in zip(sources, originals, strict=True):
        assert cached.name == original.name and len(cached) == len(original) and cached.size == original.size
        for i in (0, 17, len(original) - 1):
            a, b = cached.read(i), original.read(i)
            assert frame_code(a) == i and np.abs(a.astype(int) - b.astype(int)).mean() < 3  # JPEG error only


def test_extract_is_resumable(tmp_path, video_file, caplog):
    cache = tmp_path / "cache"
    extract_cache([video_file], cache, workers=1, progress=False)
    index = index_of(cache)
    entry = index["sources"][0]
    files = frame_files(cache, entry)
    stamps = {p: p.stat().st_mtime_ns for p in files}
    # Simulate an interrupted run: frames missing, one cut off mid-write, a temp file left over,
    # and the source not yet marked complete.
    files[5].unlink()
    files[60].unlink()
    files[33].write_bytes(files[33].read_bytes()[:100])
    (files[0].parent / "000070.jpg.1234.tmp").write_bytes(b"partial")
    entry["complete"] = False
    (cache / "index.json").write_text(json.dumps(index))
    with caplog.at_level(logging.WARNING), pytest.raises(VideoError, match="no completely extracted source"):
        discover_sources([cache])
    assert "not completely extracted" in caplog.text

    extract_cache([video_file], cache, workers=1, progress=False)
    assert index_of(cache)["sources"][0]["complete"] is True
    rewritten = {p for p in files if p.stat().st_mtime_ns != stamps.get(p)}
    assert rewritten == {files[5], files[60], files[33]}  # only the damaged frames
    assert not list(cache.glob("*/*.tmp"))
    src = discover_sources([cache])[0]
    assert len(src) == 80 and src.read(33).shape == (96, 128, 3)

    # A complete cache: a rerun touches nothing.
    stamps = {p: p.stat().st_mtime_ns for p in files}
    extract_cache([video_file], cache, workers=1, progress=False)
    assert all(p.stat().st_mtime_ns == stamps[p] for p in files)


def test_extract_refuses_other_directories_and_settings(tmp_path, video_file):
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(VideoError, match="not empty and not a frame cache"):
        extract_cache([video_file], other, workers=1, progress=False)
    cache = tmp_path / "cache"
    extract_cache([video_file], cache, max_side=64, workers=1, progress=False)
    assert index_of(cache)["sources"][0]["width"] == 64
    with pytest.raises(VideoError, match="written with --max-side 64"):
        extract_cache([video_file], cache, max_side=0, workers=1, progress=False)


def test_training_reads_the_cache_with_identical_clips(tmp_path, episode_tree, frame_code):
    cache = tmp_path / "cache"
    extract_cache([episode_tree], cache, workers=2, progress=False)  # the process pool path
    over = {"data.frame_stride": 8, "data.num_workers": 0}
    from_video = build_dataset(build_config("cpu-tiny", overrides={**over, "data.videos": [str(episode_tree)]}))
    from_cache = build_dataset(build_config("cpu-tiny", overrides={**over, "data.videos": [str(cache)]}))
    assert [s.name for s in from_cache.sources] == [s.name for s in from_video.sources]
    assert len(from_cache) == len(from_video)
    for clip in (0, 40, len(from_video) - 1):
        a, b = from_cache.frames(clip), from_video.frames(clip)
        assert [frame_code(f) for f in a] == [frame_code(f) for f in b]
        assert all(np.abs(x.astype(int) - y.astype(int)).mean() < 3 for x, y in zip(a, b, strict=True))
    views, _ = from_cache[(3, 0)]
    assert views.globals.shape == (3, 3, 96, 96)


# ------------------------------------------------------------------------------------ CLI
def _cli_available() -> bool:
    # cli.build_parser imports every command module; until all exist the CLI cannot start.
    return all(importlib.util.find_spec(module) is not None for module, _ in COMMANDS.values())


needs_cli = pytest.mark.skipif(not _cli_available(), reason="not every CLI command module exists yet")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "vidistill", "extract", *args], capture_output=True, text=True, cwd=ROOT,
        env=env, timeout=120,
    )


@needs_cli
@pytest.mark.parametrize("bad", ["missing", "empty_dir", "text_file", "zero_byte"])
def test_cli_bad_input_is_a_clear_error(tmp_path, bad):
    target = tmp_path / bad
    if bad == "empty_dir":
        target.mkdir()
    elif bad == "text_file":
        target = tmp_path / "notes.txt"
        target.write_text("hello")
    elif bad == "zero_byte":
        target = tmp_path / "zero.mp4"
        target.write_bytes(b"")
    result = run_cli("--video", str(target), "--output", str(tmp_path / "cache"), "--no-progress")
    assert result.returncode != 0
    assert str(target) in result.stderr and "error" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@needs_cli
def test_cli_extracts(tmp_path, video_file, frame_folder):
    cache = tmp_path / "cache"
    result = run_cli("--video", str(video_file), "--video", str(frame_folder), "--output", str(cache),
                     "--max-side", "64", "--quality", "90", "--workers", "2", "--no-progress")
    assert result.returncode == 0, result.stderr
    index = index_of(cache)
    assert index["quality"] == 90 and len(index["sources"]) == 2
    assert all(e["complete"] and e["width"] == 64 for e in index["sources"])


@needs_cli
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process tree from /proc")
def test_sigkilled_extract_takes_its_pool_with_it(tmp_path, make_video):
    """A ProcessPoolExecutor worker waits on a queue whose write end it holds itself: with its
    parent SIGKILLed it would wait for ever."""
    from process_tree import command_line, descendants, kill_all, survivors_of_sigkill

    video = make_video(tmp_path / "long.mp4", 2000, size=(320, 240))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "vidistill", "extract", "--video", str(video), "--output",
                             str(tmp_path / "cache"), "--workers", "2", "--no-progress"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    helpers: list[int] = []
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            helpers = descendants(proc.pid)
            frames = list((tmp_path / "cache").rglob("*.jpg"))  # the pool is at work
            if len([p for p in helpers if "spawn_main" in command_line(p)]) == 2 and frames:
                break
            time.sleep(0.1)
        assert proc.poll() is None, "extract ended before it could be killed"
        left, waited = survivors_of_sigkill(proc, helpers)
        assert not left, f"alive {waited:.0f} s after extract: {left}"
    finally:
        if proc.poll() is None:
            proc.kill()
        kill_all(helpers)


def test_command_module_imports_cheaply():
    code = "import sys, vidistill.data.command; print('cv2' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.split() == ["False", "False"]
