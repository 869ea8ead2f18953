"""Video files (mp4, mkv, avi, ...): one file is one source.

Container metadata is trusted only after checking it: the frame count only if the last frame
decodes; otherwise decodable frames are counted (a truncated recording trains on what reads,
with one warning saying how many frames were lost).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np

from vidistill.data.sources.base import Format, Opened, OpenOptions, VideoSource
from vidistill.errors import VideoError

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".avi", ".mkv", ".mov", ".webm")
# Open decoders kept per process. A robot log can hold thousands of episodes; keeping one open
# decoder (and its buffers) per episode in every DataLoader worker would exhaust memory and fds.
MAX_OPEN_CAPTURES = 8

class _OpenCaptures:
    """Per-process LRU of open decoders (see MAX_OPEN_CAPTURES)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._lru: OrderedDict[int, VideoFileSource] = OrderedDict()

    def touch(self, source: VideoFileSource) -> None:
        key = id(source)
        self._lru[key] = source
        self._lru.move_to_end(key)
        while len(self._lru) > self.capacity:
            _, oldest = self._lru.popitem(last=False)
            oldest._release()

    def forget(self, source: VideoFileSource) -> None:
        self._lru.pop(id(source), None)


_OPEN = _OpenCaptures(MAX_OPEN_CAPTURES)


def _decoder_threads() -> int:
    """1 decoder thread inside DataLoader / extract workers (they are the parallelism), else auto."""
    if os.environ.get("VIDISTILL_DECODER_THREADS"):
        return int(os.environ["VIDISTILL_DECODER_THREADS"])
    tud = sys.modules.get("torch.utils.data")  # not imported: not a DataLoader worker (stay light)
    if tud is not None and tud.get_worker_info() is not None:
        return 1
    return 0


def _open_capture(path: str, threads: int = 0) -> cv2.VideoCapture:
    params: list[int] = []
    if threads > 0 and hasattr(cv2, "CAP_PROP_N_THREADS"):
        params = [cv2.CAP_PROP_N_THREADS, threads]
    return cv2.VideoCapture(path, cv2.CAP_FFMPEG, params)


class VideoFileSource(VideoSource):
    """A video file decoded with OpenCV (FFmpeg backend).

    Exact random access: OpenCV's ``CAP_PROP_POS_FRAMES`` seek decodes forward from the previous
    keyframe to the requested frame; we then check the position it reports. If it disagrees the
    container's timestamps are not trustworthy, and this source falls back to the one point that
    is always trusted: reopen and decode sequentially from frame 0 (slow; a warning suggests
    ``vidistill extract``).

    Speed: a cursor remembers which frame the decoder returns next. Reading a clip's K frames in
    increasing order skips forward with ``grab()`` (decode without colour conversion) instead of
    seeking, as long as skipping is cheaper than a seek; that threshold is learned per source from
    measured seek and grab times (a seek costs about half a GOP of decoding, unknown up front).
    """

    kind = "video"
    _DEFAULT_GRAB_LIMIT = 32  # frames to skip by grabbing before any timing is known

    def __init__(self, path: str | os.PathLike, name: str | None = None, max_side: int = 0):
        super().__init__(path, name, max_side)
        self._reset_process_state()
        self._probe()

    def _process_local(self) -> tuple[str, ...]:
        return (*super()._process_local(), "_cap", "_pid", "_next", "_seek_s", "_grab_s", "_warned_seek")

    def _reset_process_state(self) -> None:
        super()._reset_process_state()
        self._cap: cv2.VideoCapture | None = None
        self._pid = -1
        self._next = -1  # index of the frame cap.read() returns next; -1 = unknown
        self._seek_s: float | None = None  # running mean seconds per seek
        self._grab_s: float | None = None  # running mean seconds per grabbed frame
        self._warned_seek = False
        if not hasattr(self, "_seekable"):
            self._seekable = True

    # --------------------------------------------------------------------------------- probing
    def _probe(self) -> None:
        path = self.path
        size = os.path.getsize(path)
        if size == 0:
            raise VideoError(f"{path}: empty file (0 bytes)")
        cap = _open_capture(path)
        try:
            if not cap.isOpened():
                raise VideoError(
                    f"{path}: cannot be opened as a video (not a video, or a truncated/corrupt container)"
                )
            meta_frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            fps = float(cap.get(cv2.CAP_PROP_FPS))
            ok, first = cap.read()
            if not ok or first is None:
                raise VideoError(f"{path}: no frame can be decoded (not a video, or corrupt)")
            # The decoded frame is the truth: OpenCV applies rotation metadata, so the container's
            # width/height can be swapped relative to what read() returns.
            height, width = first.shape[:2]
            # Trust the container's frame count only if its last frame decodes (one seek).
            trusted = False
            if meta_frames == 1:
                trusted = True
            elif meta_frames > 1:
                cap.set(cv2.CAP_PROP_POS_FRAMES, meta_frames - 1)
                pos_ok = round(cap.get(cv2.CAP_PROP_POS_FRAMES)) == meta_frames - 1
                trusted = pos_ok and cap.read()[0]
        finally:
            cap.release()
        frames = meta_frames
        if not trusted:
            frames = self._count_frames()
            if frames == 0:
                raise VideoError(f"{path}: no frame can be decoded (not a video, or corrupt)")
            if meta_frames > frames:
                log.warning(
                    "%s: the container says %d frames but only %d decode (truncated?); "
                    "training on those %d, %d frames unreadable",
                    path, meta_frames, frames, frames, meta_frames - frames,
                )
        self.num_frames = frames
        self.fps = fps if fps > 0 and np.isfinite(fps) else 0.0
        self.native_size = (width, height)

    def _count_frames(self) -> int:
        """Decodable frames, counted by a sequential pass (only when the metadata lies)."""
        cap = _open_capture(self.path)
        try:
            count = 0
            while cap.grab():
                count += 1
            return count
        finally:
            cap.release()

    # --------------------------------------------------------------------------------- decoding
    def _capture(self) -> cv2.VideoCapture:
        if self._cap is None or self._pid != os.getpid():
            # After a fork the parent's capture shares its file offset with us: never use it.
            self._cap = None
            cap = _open_capture(self.path, _decoder_threads())
            if not cap.isOpened():
                raise VideoError(f"{self.path}: cannot be reopened for reading (file moved or deleted?)")
            self._cap, self._pid, self._next = cap, os.getpid(), 0
        _OPEN.touch(self)
        return self._cap

    def _release(self) -> None:
        if self._cap is not None and self._pid == os.getpid():
            self._cap.release()
        self._cap, self._next = None, -1

    def close(self) -> None:
        _OPEN.forget(self)
        self._release()

    def _grab_limit(self) -> float:
        if self._seek_s is None or self._grab_s is None:
            return self._DEFAULT_GRAB_LIMIT
        return self._seek_s / max(self._grab_s, 1e-7)

    @staticmethod
    def _mean(old: float | None, new: float) -> float:
        return new if old is None else 0.8 * old + 0.2 * new

    def _position(self, index: int) -> bool:
        """Make the next ``read()`` of the capture return frame ``index``."""
        cap = self._capture()
        gap = index - self._next
        if self._next >= 0 and gap >= 0 and (not self._seekable or gap <= self._grab_limit()):
            return self._skip(cap, index)
        if not self._seekable:  # backwards, or position unknown: from the trusted start
            return self._rewind_and_skip(index)
        t0 = time.perf_counter()
        cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        if round(cap.get(cv2.CAP_PROP_POS_FRAMES)) != index:
            self._seekable = False
            if not self._warned_seek:
                self._warned_seek = True
                log.warning(
                    "%s: seeking is not frame-exact; decoding sequentially from the start instead "
                    "(slow: pre-extract with `vidistill extract`)", self.path,
                )
            return self._rewind_and_skip(index)
        self._seek_s = self._mean(self._seek_s, time.perf_counter() - t0)
        self._next = index
        return True

    def _rewind_and_skip(self, index: int) -> bool:
        self._release()
        return self._skip(self._capture(), index)

    def _skip(self, cap: cv2.VideoCapture, index: int) -> bool:
        gap = index - self._next
        if gap == 0:
            return True
        t0 = time.perf_counter()
        for _ in range(gap):
            if not cap.grab():
                return False
            self._next += 1
        self._grab_s = self._mean(self._grab_s, (time.perf_counter() - t0) / gap)
        return True

    def _decode_bgr(self, index: int) -> np.ndarray | None:
        frame = None
        if self._position(index):
            assert self._cap is not None
            ok, frame = self._cap.read()
            frame = frame if ok else None
        # After a failed grab/read the decoder's position is unknown: the next read re-seeks.
        self._next = index + 1 if frame is not None else -1
        return frame




def _claims(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS


def _open(path: Path, name: str, options: OpenOptions) -> Opened:
    return Opened([VideoFileSource(path, name, options.max_side)])


FORMAT = Format("video", f"a video file ({', '.join(VIDEO_EXTENSIONS)})", _claims, _open)
