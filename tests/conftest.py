"""Shared fixtures: REAL small videos and frame folders whose frame index is readable from pixels.

Every frame carries its index as an 8-bit bar code in the top third (white block = bit set), so a
test can check exact random access on a decoded (lossy) frame; the rest is a colourful pattern
that moves with the index, so crops and colour changes are visible.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

W, H = 128, 96
BITS = 8


def pattern_frame(index: int, width: int = W, height: int = H) -> np.ndarray:
    """RGB uint8 (height, width, 3): bar code of ``index`` on top, moving colour below."""
    frame = np.zeros((height, width, 3), np.uint8)
    band = height // 3
    block = width // BITS
    for b in range(BITS):
        if (index >> b) & 1:
            frame[:band, b * block : (b + 1) * block] = 255
    yy, xx = np.mgrid[band:height, 0:width]
    shift = 3 * index
    frame[band:, :, 0] = ((xx + shift) * 255 // width) % 256
    frame[band:, :, 1] = (yy * 255 // height) % 256
    frame[band:, :, 2] = 128 + 100 * ((((xx + shift) // 16) + (yy // 16)) % 2)
    return frame


def read_code(frame: np.ndarray) -> int:
    """The index a pattern frame carries (works at any size: coordinates are relative)."""
    height, width = frame.shape[:2]
    band = frame[int(height * 0.06) : int(height * 0.27)]
    value = 0
    for b in range(BITS):
        x0, x1 = int((b + 0.25) * width / BITS), int((b + 0.75) * width / BITS)
        if band[:, x0:x1].mean() > 128:
            value |= 1 << b
    return value


def write_video(path: Path, num_frames: int, size: tuple[int, int] = (W, H), fourcc: str = "mp4v",
                fps: float = 30.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    assert writer.isOpened(), f"cannot write {path} with {fourcc}"
    for i in range(num_frames):
        writer.write(cv2.cvtColor(pattern_frame(i, *size), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def write_frames(folder: Path, num_frames: int, ext: str = ".png", size: tuple[int, int] = (W, H),
                 name: str = "frame{}") -> Path:
    """Frames named frame0, frame1, … frame10 (not zero-padded: natural sort must order them)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(num_frames):
        cv2.imwrite(str(folder / (name.format(i) + ext)), cv2.cvtColor(pattern_frame(i, *size), cv2.COLOR_RGB2BGR))
    return folder


@pytest.fixture(scope="session")
def frame_code() -> Callable[[np.ndarray], int]:
    return read_code


@pytest.fixture(scope="session")
def make_video() -> Callable[..., Path]:
    """``make_video(path, num_frames, size=(128, 96), fourcc="mp4v", fps=30)`` -> path."""
    return write_video


@pytest.fixture(scope="session")
def make_frames() -> Callable[..., Path]:
    """``make_frames(folder, num_frames, ext=".png", size=(128, 96))`` -> folder."""
    return write_frames


@pytest.fixture(scope="session")
def video_file(tmp_path_factory) -> Path:
    """An 80-frame 128x96 mp4 (mp4v), 30 fps."""
    return write_video(tmp_path_factory.mktemp("video") / "moving.mp4", 80)


@pytest.fixture(scope="session")
def video_avi(tmp_path_factory) -> Path:
    """A 64-frame 128x96 MJPG avi (one JPEG per frame: easy to truncate or corrupt)."""
    return write_video(tmp_path_factory.mktemp("avi") / "moving.avi", 64, fourcc="MJPG")


@pytest.fixture(scope="session")
def frame_folder(tmp_path_factory) -> Path:
    """40 lossless PNG frames frame0.png … frame39.png."""
    return write_frames(tmp_path_factory.mktemp("frames") / "cam0", 40)


@pytest.fixture(scope="session")
def episode_tree(tmp_path_factory) -> Path:
    """A robot log: one source per episode, of different kinds and lengths.

    log/ep_00/cam.mp4 (48 frames), log/ep_01/cam.mp4 (64), log/ep_02/rgb/*.jpg (40 frames),
    log/ep_03/cam.mp4 (10: too short for K=3, Δ=8), plus a notes.txt to ignore.
    """
    root = tmp_path_factory.mktemp("log") / "log"
    for ep, n in (("ep_00", 48), ("ep_01", 64), ("ep_03", 10)):
        (root / ep).mkdir(parents=True)
        write_video(root / ep / "cam.mp4", n)
    write_frames(root / "ep_02" / "rgb", 40, ext=".jpg")
    (root / "notes.txt").write_text("not a video")
    return root


def write_av_video(path: Path, num_frames: int, codec: str = "libsvtav1", gop: int = 2,
                   size: tuple[int, int] = (W, H), fps: int = 30, faststart: bool = False,
                   first: int = 0) -> Path:
    """A video written by PyAV (FFmpeg's encoders): ``codec`` "libsvtav1" (AV1, what LeRobot writes,
    keyframe every ``gop`` frames like LeRobot's g=2), "libx264" (H.264 with B-frames), "mpeg4".
    Frame i carries the bar code ``first + i``. ``faststart``: the mp4 index (moov) goes first,
    so a cut-off file still opens."""
    import av

    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.gop_size = gop
        if codec == "libsvtav1":
            stream.options = {"preset": "12", "crf": "30"}  # LeRobot's crf; fastest preset (tests)
        elif codec == "libx264":
            stream.options = {"preset": "ultrafast", "bf": "2", "crf": "18"}
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(pattern_frame(first + i, *size), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="session")
def make_av_video() -> Callable[..., Path]:
    """``make_av_video(path, num_frames, codec="libsvtav1", gop=2, ...)`` -> path (see write_av_video)."""
    return write_av_video
