"""ROS bags (ROS 1 .bag, rosbag2 sqlite3 and mcap, bare .mcap) written by rosbags' own writers:
exact random access per topic, every supported encoding, depth skipped, every bad input, a
truncated MCAP, `vidistill info` and a 2-step `vidistill train` on a bag."""

from __future__ import annotations

import logging
import pickle
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
from robot_log_fixtures import Topic, code, frame, write_ros1_bag, write_ros2_bag

from vidistill.data.sources import discover_sources
from vidistill.data.sources.discovery import discover
from vidistill.data.sources.rosbag import RosbagSource
from vidistill.errors import VideoError

pytest.importorskip("rosbags")

COLOR, JPEG, DEPTH = "/camera/color/image_raw", "/camera/left/compressed", "/camera/depth/image_raw"
TOPICS = [
    Topic(COLOR, "rgb8", 30, stream=0, row_padding=8),  # Image.step > width * 3
    Topic(JPEG, "jpeg", 24, stream=1),
    Topic(DEPTH, "16UC1", 30, stream=2),
    Topic("/imu/temperature", "imu", 30),
]


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp("bags")
    ros2_mcap = write_ros2_bag(root / "run_mcap", TOPICS, storage="mcap")
    return {
        "ros1": write_ros1_bag(root / "run.bag", TOPICS, compression="lz4"),
        "sqlite3": write_ros2_bag(root / "run_sqlite", TOPICS, storage="sqlite3"),
        "mcap": ros2_mcap,
        "bare_mcap": next(ros2_mcap.glob("*.mcap")),
    }


def check_exact(src, stream: int, frame_code) -> None:
    """Every frame, in a shuffled order plus the topic's boundaries, carries its own code."""
    rng = np.random.default_rng(0)
    order = rng.permutation(len(src)).tolist() + [0, len(src) - 1, 0]
    for i in order:
        image = src.read(i)
        assert image.dtype == np.uint8 and image.shape == (48, 64, 3)
        assert frame_code(image) == code(stream, i), f"{src.name}: frame {i}"
    assert [frame_code(x) for x in src.read_many([2, 9, 16])] == [code(stream, i) for i in (2, 9, 16)]


@pytest.mark.parametrize("kind", ["ros1", "sqlite3", "mcap", "bare_mcap"])
def test_one_source_per_image_topic_with_exact_random_access(bags, kind, frame_code):
    found = discover([bags[kind]])
    sources = found.sources
    assert [s.camera for s in sources] == [COLOR, JPEG]  # the topics, as the bag names them
    assert all(isinstance(s, RosbagSource) and s.kind == "rosbag" for s in sources)
    assert [len(s) for s in sources] == [30, 24]
    assert all(s.fps == pytest.approx(30.0, rel=1e-3) and s.size == (64, 48) for s in sources)
    assert {s.episode for s in sources} == {bags[kind].name}
    assert [s.describe()["codec"] for s in sources] == ["rgb8", "jpeg"]
    # The depth topic is skipped and said so (vidistill info prints these lines).
    assert len(found.skipped) == 1 and DEPTH in found.skipped[0] and "depth" in found.skipped[0]
    for src, stream in zip(sources, (0, 1), strict=True):
        check_exact(src, stream, frame_code)
    # A DataLoader worker gets a pickled source: no open reader travels, it reopens its own.
    clone = pickle.loads(pickle.dumps(sources[0]))
    assert frame_code(clone.read(29)) == code(0, 29)
    for src in sources:
        src.close()
    assert frame_code(sources[1].read(23)) == code(1, 23)  # reading after close reopens


@pytest.mark.parametrize("encoding", ["bgr8", "rgba8", "bgra8", "mono8", "bayer_rggb8", "png"])
def test_encodings_convert_to_rgb(tmp_path, encoding, frame_code):
    bag = write_ros1_bag(tmp_path / f"{encoding}.bag", [Topic("/cam", encoding, 6, stream=3)])
    (src,) = discover_sources([bag])
    for i in (5, 0, 3):
        image = src.read(i)
        assert frame_code(image) == code(3, i)
        expected = frame(3, i).astype(int)
        if encoding == "mono8":  # grey in all three channels
            assert np.array_equal(image[..., 0], image[..., 2])
            expected = np.repeat(cv2.cvtColor(frame(3, i), cv2.COLOR_RGB2GRAY)[..., None].astype(int), 3, axis=2)
        tolerance = 8 if encoding == "bayer_rggb8" else 2  # demosaicing blurs edges a little
        assert np.abs(image.astype(int) - expected).mean() < tolerance, encoding


def test_messages_sharing_a_timestamp_keep_their_order(tmp_path, frame_code):
    bag = write_ros1_bag(tmp_path / "same_stamp.bag", [Topic("/cam", "rgb8", 12, frame_ns=0)])
    (src,) = discover_sources([bag])
    assert [frame_code(src.read(i)) for i in (11, 0, 6, 5)] == [11, 0, 6, 5]


def test_camera_selects_topics_and_names_the_ones_there(bags):
    (src,) = discover_sources([bags["ros1"]], cameras=[JPEG])
    assert src.camera == JPEG
    with pytest.raises(VideoError, match=f"no camera named /nope.*{COLOR}"):
        discover_sources([bags["ros1"]], cameras=["/nope"])
    with pytest.raises(VideoError, match=f"run.bag: camera {DEPTH} cannot be used: depth images"):
        discover_sources([bags["ros1"]], cameras=[DEPTH])


def test_a_log_tree_of_bags(bags, tmp_path):
    root = tmp_path / "logs"
    root.mkdir()
    shutil.copy(bags["ros1"], root / "day1.bag")
    shutil.copytree(bags["mcap"], root / "day2")  # a rosbag2 folder: one log, its .mcap not walked
    (root / "notes.txt").write_text("not a log")
    sources = discover_sources([root])
    assert [s.name for s in sources] == [f"logs/day1.bag:{COLOR}", f"logs/day1.bag:{JPEG}",
                                         f"logs/day2:{COLOR}", f"logs/day2:{JPEG}"]


# ------------------------------------------------------------------------------ bad input
def test_bag_without_image_topics_lists_its_topics(tmp_path):
    bag = write_ros1_bag(tmp_path / "imu_only.bag", [Topic("/imu/temperature", "imu", 5)])
    with pytest.raises(VideoError, match=r"imu_only.bag: no image topics .*/imu/temperature \(sensor_msgs/msg/Temperature\)"):
        discover_sources([bag])


def test_unsupported_encoding_is_named(tmp_path):
    bag = write_ros2_bag(tmp_path / "yuv", [Topic("/cam", "yuv422", 5)])
    with pytest.raises(VideoError, match="yuv: no usable image topic.*unsupported image encoding 'yuv422'"):
        discover_sources([bag])


def test_only_depth_is_an_error(tmp_path):
    bag = write_ros1_bag(tmp_path / "depth.bag", [Topic("/depth", "16UC1", 5), Topic("/cd", "compressedDepth", 5)])
    with pytest.raises(VideoError, match="depth.bag: no usable image topic.*depth images"):
        discover_sources([bag])


@pytest.mark.parametrize("content", [b"", b"#ROSBAG V2.0\n" + b"\0" * 50, b"not a bag at all" * 20])
def test_not_a_bag(tmp_path, content):
    path = tmp_path / "broken.bag"
    path.write_bytes(content)
    with pytest.raises(VideoError, match="broken.bag: not a readable ROS bag"):
        discover_sources([path])


def test_not_an_mcap(tmp_path):
    for content in (b"", b"\x89MCAP0\r\n" + b"\0" * 7, b"not an mcap file" * 20):
        path = tmp_path / "broken.mcap"
        path.write_bytes(content)
        with pytest.raises(VideoError, match="broken.mcap: (not a readable MCAP file|no image topics)"):
            discover_sources([path])


def test_truncated_mcap_trains_on_what_reads(bags, tmp_path, caplog, frame_code):
    folder = shutil.copytree(bags["mcap"], tmp_path / "cut")
    mcap = next(folder.glob("*.mcap"))
    data = mcap.read_bytes()
    mcap.write_bytes(data[: len(data) * 2 // 3])  # power loss: no summary, no footer, a chunk cut short
    with caplog.at_level(logging.WARNING):
        sources = discover_sources([folder])
    assert [s.camera for s in sources] == [COLOR, JPEG]
    assert 0 < len(sources[0]) < 30 and 0 < len(sources[1]) < 24
    for src, stream in zip(sources, (0, 1), strict=True):
        assert [frame_code(src.read(i)) for i in range(len(src))] == [code(stream, i) for i in range(len(src))]
    # How much was lost: metadata.yaml (written when the recording stopped) says what was recorded.
    assert "truncated MCAP" in caplog.text and f"{COLOR}: {len(sources[0])} of 30 frames" in caplog.text
    # A crash leaves no metadata.yaml: the bare .mcap is found and salvaged the same way.
    (folder / "metadata.yaml").unlink()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = discover_sources([folder])
    assert [len(s) for s in again] == [len(s) for s in sources]
    assert "no metadata.yaml says how much was recorded" in caplog.text


def test_truncated_zstd_mcap_keeps_the_whole_chunks_before_the_cut(tmp_path, caplog, frame_code):
    big = (256, 192)  # 147 kB per message: the 8th closes a chunk (> 1 MiB)
    folder = write_ros2_bag(tmp_path / "zstd", [Topic("/cam", "rgb8", 30, size=big)], storage="mcap", compressed=True)
    mcap = next(folder.glob("*.mcap"))
    full = discover_sources([folder])[0]
    assert len(full) == 30 and frame_code(full.read(29)) == code(0, 29)
    data = mcap.read_bytes()
    mcap.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING):
        (src,) = discover_sources([folder])
    assert 0 < len(src) < 30 and len(src) % 8 == 0  # a compressed chunk cut short is lost whole
    assert [frame_code(src.read(i)) for i in range(len(src))] == list(range(len(src)))
    assert f"/cam: {len(src)} of 30 frames" in caplog.text


def test_missing_rosbags_names_the_extra(bags, monkeypatch):
    monkeypatch.setitem(sys.modules, "rosbags.highlevel", None)  # as if `pip install vidistill` only
    with pytest.raises(VideoError, match=r'pip install "vidistill\[ros\]"'):
        discover_sources([bags["ros1"]])


# ------------------------------------------------------------------------------------ CLI
def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "vidistill", *args], capture_output=True, text=True, timeout=300)


def test_cli_info_on_a_bag(bags):
    r = run_cli("info", str(bags["sqlite3"]))
    assert r.returncode == 0, r.stderr
    for text in ("rosbag ROS 2 sqlite3", "episodes: 1", COLOR, JPEG, "rgb8", "jpeg", "64x48",
                 f"{DEPTH}: depth images (16UC1)"):
        assert text in r.stdout, text
    r = run_cli("info", str(bags["ros1"]), "--camera", DEPTH)
    assert r.returncode != 0 and "Traceback" not in r.stderr and "cannot be used: depth images" in r.stderr


def test_cli_extract_a_bag_to_the_jpeg_cache(bags, tmp_path, frame_code):
    cache = tmp_path / "cache"
    r = run_cli("extract", "--video", str(bags["ros1"]), "--output", str(cache), "--workers", "1", "--no-progress")
    assert r.returncode == 0, r.stderr
    sources = discover_sources([cache])
    assert [(s.kind, s.camera, len(s)) for s in sources] == [("cache", COLOR, 30), ("cache", JPEG, 24)]
    assert frame_code(sources[0].read(17)) == code(0, 17) and frame_code(sources[1].read(23)) == code(1, 23)
    one = tmp_path / "one_camera"
    r = run_cli("extract", "--video", str(bags["bare_mcap"]), "--camera", JPEG, "--output", str(one),
                "--workers", "1", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert [(s.camera, len(s)) for s in discover_sources([one])] == [(JPEG, 24)]


def test_cli_bad_bag_is_a_clear_error(tmp_path):
    bag = write_ros1_bag(tmp_path / "imu_only.bag", [Topic("/imu/temperature", "imu", 5)])
    r = run_cli("extract", "--video", str(bag), "--output", str(tmp_path / "cache"), "--no-progress")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "no image topics" in r.stderr and "/imu/temperature" in r.stderr
    assert not (tmp_path / "cache").exists()  # nothing half-written


def test_cli_trains_two_steps_on_a_bag(bags, tmp_path):
    out = tmp_path / "run"
    r = run_cli("train", "--video", str(bags["mcap"]), "--output", str(out), "--max-steps", "2",
                "--preset", "cpu-tiny", "--frame-stride", "4", "--batch-size", "2", "--global-size", "32",
                "--out-dim", "64", "--num-workers", "0", "--set", "data.local_size=16",
                "--set", "model.head_hidden_dim=64")
    assert r.returncode == 0, r.stderr
    assert len((out / "log.jsonl").read_text().splitlines()) == 2
