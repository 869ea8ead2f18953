"""Video decoding with PyAV: the codecs robot logs use, exact random access, damaged files."""

from __future__ import annotations

import logging

import av
import numpy as np
import pytest

from vidistill.data.sources import VideoFileSource, discover_sources
from vidistill.errors import VideoError


def pyav_sequential(path) -> list[np.ndarray]:
    """Reference: every frame by a plain sequential PyAV decode (RGB)."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


@pytest.mark.parametrize(("codec", "gop", "name"), [("libsvtav1", 2, "av1"), ("libx264", 12, "h264")])
def test_robot_log_codecs_decode_with_exact_random_access(tmp_path, make_av_video, frame_code, codec, gop, name):
    # AV1 with a keyframe every 2 frames is what LeRobot writes; H.264 here has B-frames (bf=2),
    # so decode order differs from presentation order.
    path = make_av_video(tmp_path / f"{codec}.mp4", 30, codec=codec, gop=gop)
    reference = pyav_sequential(path)
    src = VideoFileSource(path)
    assert len(src) == len(reference) == 30 and src.fps == pytest.approx(30.0)
    assert src.describe()["codec"] == name and src.size == (128, 96)
    assert [frame_code(f) for f in reference] == list(range(30))
    order = np.random.default_rng(1).permutation(30).tolist() + [29, 0, 13, 12, 14]
    for i in order:
        assert np.array_equal(src.read(i), reference[i]), f"frame {i} differs from the sequential decode"
    clip = src.read_many([3, 11, 19])  # increasing: forward decode where cheaper than a seek
    assert [frame_code(f) for f in clip] == [3, 11, 19]
    assert np.array_equal(src.read_bgr(5)[..., ::-1], reference[5])


def test_a_window_of_a_file_is_a_source(tmp_path, make_av_video, frame_code):
    path = make_av_video(tmp_path / "two_episodes.mp4", 20)
    whole = VideoFileSource(path)
    second = VideoFileSource(path, "ep1", index=whole.index, first=12, length=8)
    assert len(second) == 8
    assert [frame_code(second.read(i)) for i in (7, 0, 3)] == [19, 12, 15]
    with pytest.raises(IndexError):
        second.read(8)  # a clip never reads past its episode


def test_cut_off_mp4_with_index_first_trains_on_what_reads(tmp_path, make_av_video, frame_code, caplog):
    # An mp4 written with +faststart keeps its index at the front: cut off, it still opens, and
    # the packets past the cut are gone.
    path = make_av_video(tmp_path / "faststart.mp4", 40, codec="libx264", gop=4, faststart=True)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.6)])
    with caplog.at_level(logging.WARNING):
        src = discover_sources([cut])[0]
    assert 0 < len(src) < 40
    assert f"says 40 frames but only {len(src)} decode" in caplog.text and "cut.mp4" in caplog.text
    assert frame_code(src.read(len(src) - 1)) == len(src) - 1
    assert [frame_code(src.read(i)) for i in (0, len(src) // 2)] == [0, len(src) // 2]


def test_a_codec_without_decoder_is_named(tmp_path, make_video):
    path = make_video(tmp_path / "odd.avi", 6, fourcc="MJPG")
    path.write_bytes(path.read_bytes().replace(b"MJPG", b"ZQZQ"))  # a codec tag nobody decodes
    with pytest.raises(VideoError, match=r"odd.avi: video codec with fourcc 'ZQZQ' cannot be decoded.*pip install"):
        discover_sources([path])


def test_no_python_log_callback_is_installed(tmp_path, make_av_video):
    # With PyAV's log callback on, closing a frame-threaded H.264 decoder deadlocks (its threads
    # wait for the GIL to log, the closing thread holds it): probing must leave logging off.
    path = make_av_video(tmp_path / "threads.mp4", 40, codec="libx264", gop=30)
    for _ in range(5):
        src = VideoFileSource(path)
        src.read(35)
        src.close()
    assert av.logging.get_level() is None
