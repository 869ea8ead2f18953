"""Sources: metadata without full decode, exact random access, discovery, and every bad input."""

from __future__ import annotations

import logging
import pickle

import cv2
import numpy as np
import pytest

from vidistill.data.clips import select_usable
from vidistill.data.sources import (
    FrameFolderSource,
    VideoFileSource,
    discover_sources,
    natural_key,
)
from vidistill.errors import VideoError


def sequential(path) -> list[np.ndarray]:
    """Reference: every frame by a plain sequential OpenCV decode (RGB)."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames


@pytest.mark.parametrize("fixture", ["video_file", "video_avi"])
def test_random_access_equals_sequential_decode(request, fixture, frame_code):
    path = request.getfixturevalue(fixture)
    reference = sequential(path)
    src = VideoFileSource(path)
    assert len(src) == len(reference)
    assert src.size == (128, 96) and src.fps == pytest.approx(30.0)
    assert [frame_code(f) for f in reference] == list(range(len(reference)))
    rng = np.random.default_rng(0)
    for i in rng.permutation(len(src)).tolist() + [0, 1, 2, len(src) - 1, 5, 4]:
        frame = src.read(i)
        assert frame.dtype == np.uint8 and frame.shape == (96, 128, 3)
        assert np.array_equal(frame, reference[i]), f"frame {i} differs from the sequential decode"
    # A clip read in increasing order (the cursor path: grab forward, no seek) is exact too.
    assert all(np.array_equal(a, reference[i]) for a, i in zip(src.read_many([3, 11, 19]), [3, 11, 19], strict=True))


def test_source_is_picklable_and_reopens(video_file):
    src = VideoFileSource(video_file)
    before = src.read(40)
    payload = pickle.dumps(src)
    assert b"av.container" not in payload and len(payload) < 10_000  # metadata travels, never a decoder
    clone = pickle.loads(payload)
    assert np.array_equal(clone.read(40), before)
    assert np.array_equal(clone.read(7), src.read(7))


def test_max_side_downscales_on_decode(video_file, frame_folder, frame_code):
    src = VideoFileSource(video_file, max_side=64)
    assert src.size == (64, 48) and src.native_size == (128, 96)
    assert src.read(9).shape == (48, 64, 3) and frame_code(src.read(9)) == 9
    folder = FrameFolderSource(frame_folder, max_side=64)
    assert folder.read(13).shape == (48, 64, 3) and frame_code(folder.read(13)) == 13
    assert VideoFileSource(video_file, max_side=1000).size == (128, 96)  # never upscales


def test_jpeg_frames_decode_reduced_when_downscaling(tmp_path, make_frames, frame_code):
    folder = make_frames(tmp_path / "jpg", 12, ext=".jpg", size=(256, 192))
    full = FrameFolderSource(folder)
    for max_side in (128, 64, 50):  # libjpeg DCT scaling by 2, 4, and 4 + a final INTER_AREA
        small = FrameFolderSource(folder, max_side=max_side)
        frame = small.read(11)
        assert frame.shape == (small.size[1], small.size[0], 3) and max(small.size) == max_side
        assert frame_code(frame) == 11
        reference = cv2.resize(full.read(11), small.size, interpolation=cv2.INTER_AREA)
        assert np.abs(frame.astype(int) - reference.astype(int)).mean() < 4


def test_frame_folder_natural_order(frame_folder, frame_code):
    src = FrameFolderSource(frame_folder)
    assert len(src) == 40 and src.size == (128, 96)
    # frame2 before frame10: the index read from the pixels matches the position.
    assert [frame_code(src.read(i)) for i in range(len(src))] == list(range(40))
    assert sorted(["frame10", "frame2", "frame1"], key=natural_key) == ["frame1", "frame2", "frame10"]


def test_discover_episode_tree(episode_tree, video_file):
    sources = discover_sources([episode_tree, video_file])
    names = [s.name for s in sources]
    assert names == ["log/ep_00/cam.mp4", "log/ep_01/cam.mp4", "log/ep_02/rgb", "log/ep_03/cam.mp4", "moving.mp4"]
    assert [len(s) for s in sources] == [48, 64, 40, 10, 80]
    assert [s.kind for s in sources] == ["video", "video", "frames", "video", "video"]
    assert discover_sources([episode_tree / "ep_02" / "rgb"])[0].kind == "frames"
    assert len(discover_sources([video_file, video_file])) == 1  # the same file twice counts once


def test_too_short_sources_are_skipped_by_name(episode_tree, caplog):
    sources = discover_sources([episode_tree])
    with caplog.at_level(logging.WARNING):
        usable = select_usable(sources, num_frames=3, frame_stride=8)  # needs 17 frames
    assert [s.name for s in usable] == ["log/ep_00/cam.mp4", "log/ep_01/cam.mp4", "log/ep_02/rgb"]
    assert "log/ep_03/cam.mp4" in caplog.text and "too short" in caplog.text
    with pytest.raises(VideoError, match="no source is long enough") as error:
        select_usable(sources, num_frames=3, frame_stride=40)
    # Named by source (episode x camera, with its length) and with a stride that fits the longest (64).
    assert "log/ep_01/cam.mp4 (64)" in str(error.value) and "data.frame_stride=31 fits" in str(error.value)


# ----------------------------------------------------------------------------- bad input
def test_missing_path(tmp_path):
    with pytest.raises(VideoError, match="nope.mp4: no such file"):
        discover_sources([tmp_path / "nope.mp4"])


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError, match="empty: no video files"):
        discover_sources([tmp_path / "empty"])


def test_not_a_video(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(VideoError, match="notes.txt: not a video file"):
        discover_sources([text])
    fake = tmp_path / "fake.mp4"
    fake.write_text("this is not an mp4 container" * 10)
    with pytest.raises(VideoError, match="fake.mp4: cannot be opened as a video"):
        discover_sources([fake])


def test_zero_byte_video(tmp_path):
    (tmp_path / "zero.mp4").write_bytes(b"")
    with pytest.raises(VideoError, match="zero.mp4: empty file"):
        discover_sources([tmp_path / "zero.mp4"])


def test_truncated_mp4_is_an_error(tmp_path, video_file):
    # mp4 keeps its index (moov) at the end: a cut-off mp4 cannot be opened at all.
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(video_file.read_bytes()[: video_file.stat().st_size // 2])
    with pytest.raises(VideoError, match="cut.mp4: cannot be opened"):
        discover_sources([cut])


def test_truncated_video_trains_on_what_decodes(tmp_path, video_avi, frame_code, caplog):
    cut = tmp_path / "cut.avi"
    cut.write_bytes(video_avi.read_bytes()[: int(video_avi.stat().st_size * 0.6)])
    with caplog.at_level(logging.WARNING):
        src = discover_sources([cut])[0]
    reference = sequential(cut)
    assert 0 < len(src) == len(reference) < 64  # the real count, not the container's 64
    assert f"says 64 frames but only {len(src)} decode" in caplog.text and "cut.avi" in caplog.text
    assert frame_code(src.read(len(src) - 1)) == len(src) - 1
    assert np.array_equal(src.read(len(src) // 2), reference[len(src) // 2])


def test_corrupt_frame_is_replaced_by_its_neighbour(tmp_path, video_avi, frame_code, caplog):
    data = bytearray(video_avi.read_bytes())
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]
    assert len(starts) >= 64  # one JPEG (SOI marker) per frame
    bad = starts[30]
    data[bad : bad + 400] = b"\x00" * 400
    path = tmp_path / "corrupt.avi"
    path.write_bytes(bytes(data))
    src = discover_sources([path])[0]
    with caplog.at_level(logging.WARNING):
        frames = src.read_many([28, 30, 32])  # must not raise
        again = src.read(30)
    assert frame_code(frames[0]) == 28
    assert frame_code(frames[1]) in (29, 31) and frame_code(again) == frame_code(frames[1])
    assert caplog.text.count("cannot be decoded") == 1 and "corrupt.avi" in caplog.text


def test_mixed_frame_sizes_in_a_folder(tmp_path, make_frames):
    folder = make_frames(tmp_path / "mixed", 6)
    make_frames(tmp_path / "other", 1, size=(64, 48), name="frame99")
    (tmp_path / "other" / "frame99.png").rename(folder / "frame99.png")
    with pytest.raises(VideoError, match=r"mixed: frames of different sizes: 128x96 .* and 64x48"):
        discover_sources([folder])


def test_unreadable_image_in_a_folder_is_replaced(tmp_path, make_frames, frame_code, caplog):
    folder = make_frames(tmp_path / "cam", 8)
    src = discover_sources([folder])[0]
    (folder / "frame3.png").write_bytes(b"garbage")  # damaged after discovery, e.g. a bad disk
    with caplog.at_level(logging.WARNING):
        assert frame_code(src.read(3)) == 2
    assert "frame 3 cannot be decoded" in caplog.text


def test_a_broken_episode_in_a_tree_is_skipped(tmp_path, make_video, caplog):
    root = tmp_path / "log"
    (root / "ep_0").mkdir(parents=True)
    (root / "ep_1").mkdir()
    make_video(root / "ep_0" / "cam.mp4", 30)
    good = (root / "ep_0" / "cam.mp4").read_bytes()
    (root / "ep_1" / "cam.mp4").write_bytes(good[: len(good) // 2])  # recording cut off
    with caplog.at_level(logging.WARNING):
        sources = discover_sources([root])
    assert [s.name for s in sources] == ["log/ep_0/cam.mp4"]
    assert "ep_1/cam.mp4: cannot be opened" in caplog.text
    (root / "ep_0" / "cam.mp4").write_bytes(b"")
    with pytest.raises(VideoError, match="no usable video"):
        discover_sources([root])
    with pytest.raises(VideoError, match="ep_0/cam.mp4: empty file"):  # named explicitly: an error
        discover_sources([root / "ep_0" / "cam.mp4"])


def test_frame_folders_and_eval_datasets_take_the_same_image_files(tmp_path, make_frames):
    """One IMAGE_EXTENSIONS (issue 20, defect 10): frame folders skipped .bmp/.webp, which eval read."""
    from vidistill.eval.datasets import image_folder

    for ext in (".bmp", ".webp"):
        assert len(FrameFolderSource(make_frames(tmp_path / ext[1:], 12, ext=ext))) == 12, ext
    for split in ("train", "val"):
        for label, ext in (("a", ".bmp"), ("b", ".webp")):
            make_frames(tmp_path / "classes" / split / label, 3, ext=ext)
    classes, train, val = image_folder(tmp_path / "classes")
    assert classes == ["a", "b"] and train.labels == val.labels == [0, 0, 0, 1, 1, 1]
