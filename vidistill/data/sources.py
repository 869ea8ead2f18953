"""Where frames come from: a video file, a folder of frames, or a JPEG cache written by ``extract``.

A :class:`VideoSource` is one recorded sequence (METHOD.md "Data: clips": a clip never spans two
sources). Every source answers ``len(source)``, ``fps``, ``size`` without decoding the whole
video, and ``read(i)`` returns frame ``i`` as an RGB ``uint8`` array of shape (H, W, 3), exactly
the frame a sequential decode would give at position ``i``.

Sources are picklable: the open decoder is process-local state, dropped when pickled and reopened
lazily (also after a ``fork``: two processes must never share one decoder's file offset).

Policy for damaged input (decided here, once, for training and ``extract`` alike):

* a missing path, an empty folder, a file that is not a video, a zero-byte or unreadable container:
  :class:`~vidistill.errors.VideoError` naming the path, at discovery time;
* a video whose container claims more frames than decode (truncated recording): the real number of
  decodable frames is counted and used, with one warning saying how many frames were lost;
* a frame that fails to decode at read time (corrupt packet, unreadable image file): it is replaced
  by the nearest good frame of the same source (earlier first), with one warning per source. A
  clip with one repeated frame costs a little signal; killing a 100-epoch run costs far more. If no
  good frame is near, ``read`` raises ``VideoError`` and the dataset moves to another clip;
* frames of different sizes in one frame folder: ``VideoError`` naming the folder and both sizes
  (two sizes in one folder nearly always means two recordings were mixed; resizing would hide it).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vidistill.errors import VideoError

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".avi", ".mkv", ".mov", ".webm")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
JPEG_EXTENSIONS = (".jpg", ".jpeg")

CACHE_INDEX = "index.json"
CACHE_FORMAT = "vidistill-jpeg-cache"
CACHE_VERSION = 1

# A bad frame is replaced by a good one at most this many frames away; beyond that the damage is
# not a glitch and the clip is given up (the dataset picks another one).
MAX_SUBSTITUTE_DISTANCE = 8
# Open decoders kept per process. A robot log can hold thousands of episodes; keeping one open
# decoder (and its buffers) per episode in every DataLoader worker would exhaust memory and fds.
MAX_OPEN_CAPTURES = 8

_IMREAD_RGB: int | None = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.10: no cvtColor


def natural_key(text: str) -> list[Any]:
    """Sort key with numbers compared as numbers: ``frame2`` < ``frame10``.

    ``re.split`` with a capture group always alternates text, number, text, ... so two keys
    compare str with str and int with int at every position.
    """
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", text)]


def scaled_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) after fitting the longer side into ``max_side`` (never upscaling)."""
    longest = max(width, height)
    if max_side <= 0 or longest <= max_side:
        return width, height
    scale = max_side / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to ``size`` (w, h) with area averaging (the right filter for downscaling)."""
    if (image.shape[1], image.shape[0]) == size:
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


class VideoSource(ABC):
    """One recorded sequence of frames. Subclasses implement :meth:`read_bgr` and probing."""

    kind = "source"

    def __init__(self, path: str | os.PathLike, name: str | None = None, max_side: int = 0):
        self.path = str(path)
        self.name = name or Path(path).name
        self.max_side = int(max_side)
        self.num_frames = 0
        self.fps = 0.0
        self.native_size = (0, 0)  # (width, height) as stored
        # Process-local state; never pickled.
        self._bad: dict[int, int] = {}  # frame that failed to decode -> the frame used instead
        self._warned_bad = False

    # ------------------------------------------------------------------------------- metadata
    def __len__(self) -> int:
        return self.num_frames

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames ``read`` returns (after ``max_side``)."""
        return scaled_size(*self.native_size, self.max_side)

    def describe(self) -> dict[str, Any]:
        w, h = self.size
        return {"name": self.name, "path": self.path, "kind": self.kind, "frames": self.num_frames,
                "fps": self.fps, "width": w, "height": h}

    def __repr__(self) -> str:
        w, h = self.size
        return f"{type(self).__name__}({self.name!r}, {self.num_frames} frames, {w}x{h}, {self.fps:g} fps)"

    # --------------------------------------------------------------------------------- pickling
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in self._process_local():
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset_process_state()

    def _process_local(self) -> tuple[str, ...]:
        return ("_bad", "_warned_bad")

    def _reset_process_state(self) -> None:
        self._bad = {}
        self._warned_bad = False

    # ---------------------------------------------------------------------------------- reading
    @abstractmethod
    def _decode_bgr(self, index: int) -> np.ndarray | None:
        """Frame ``index`` as stored (BGR, native size), or None when it cannot be decoded."""

    def read_bgr(self, index: int) -> np.ndarray:
        """Frame ``index`` as BGR uint8 (H, W, 3) at :attr:`size` (what ``cv2.imencode`` wants)."""
        if not 0 <= index < self.num_frames:
            raise IndexError(f"{self.path}: frame {index} out of range (0..{self.num_frames - 1})")
        frame = self._decode_bgr(index) if index not in self._bad else None
        if frame is None:
            frame = self._substitute(index)
        return fit(frame, self.size)

    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` as RGB uint8 (H, W, 3) at :attr:`size`."""
        return cv2.cvtColor(self.read_bgr(index), cv2.COLOR_BGR2RGB)

    def read_many(self, indices: Sequence[int]) -> list[np.ndarray]:
        """Frames in the given order. Increasing indices are cheapest (sequential decode)."""
        return [self.read(i) for i in indices]

    def close(self) -> None:  # noqa: B027 (optional hook: image sources hold nothing open)
        """Release process-local resources (open decoders). Reading reopens them."""

    def _substitute(self, index: int) -> np.ndarray:
        """The nearest good frame for a frame that does not decode (earlier frames first)."""
        if index in self._bad:
            frame = self._decode_bgr(self._bad[index])
            if frame is not None:
                return frame
        for dist in range(1, MAX_SUBSTITUTE_DISTANCE + 1):
            for j in (index - dist, index + dist):
                if 0 <= j < self.num_frames and j not in self._bad:
                    frame = self._decode_bgr(j)
                    if frame is not None:
                        self._bad[index] = j
                        if not self._warned_bad:
                            self._warned_bad = True
                            log.warning(
                                "%s: frame %d cannot be decoded; using frame %d instead "
                                "(further bad frames of this source are replaced silently)",
                                self.path, index, j,
                            )
                        return frame
        raise VideoError(
            f"{self.path}: frame {index} and all frames within {MAX_SUBSTITUTE_DISTANCE} of it "
            "cannot be decoded (corrupt file?)"
        )


# ======================================================================================= video
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


# ================================================================================ frame folder
def _image_files(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")]
    files = [p for p in files if p.is_file()]
    files.sort(key=lambda p: natural_key(p.name))
    return files


def _image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the image header only (PIL reads no pixels until asked)."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            return im.size
    except Exception:  # unreadable header: the read-time policy (substitution) handles it
        return None


def _imread_flags(native: tuple[int, int], target: tuple[int, int], jpeg: bool) -> tuple[int, int]:
    """(imread flags, reduction) that decode at most the resolution we need.

    libjpeg can decode a JPEG directly at 1/2, 1/4, 1/8 size (DCT scaling), which is cheaper than
    decoding full size and then shrinking; the INTER_AREA resize after that is then small.
    """
    reduce = 1
    if jpeg and target[0] < native[0]:
        for r in (8, 4, 2):
            if native[0] // r >= target[0] and native[1] // r >= target[1]:
                reduce = r
                break
    flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
             8: cv2.IMREAD_REDUCED_COLOR_8}[reduce]
    return flags, reduce


class _ImageSequence(VideoSource):
    """Shared reading for sources made of one image file per frame."""

    def _frame_path(self, index: int) -> str:
        raise NotImplementedError

    def _is_jpeg(self) -> bool:
        return False

    def _decode_bgr(self, index: int) -> np.ndarray | None:
        flags, reduce = _imread_flags(self.native_size, self.size, self._is_jpeg())
        image = cv2.imread(self._frame_path(index), flags)
        if image is None:
            return None
        self._check_size(index, image, reduce)
        return image

    def _check_size(self, index: int, image: np.ndarray, reduce: int) -> None:
        w, h = self.native_size
        expected = (-(-w // reduce), -(-h // reduce)) if reduce > 1 else (w, h)
        got = (image.shape[1], image.shape[0])
        if got != expected:
            native_got = (got[0] * reduce, got[1] * reduce) if reduce > 1 else got
            raise VideoError(
                f"{Path(self._frame_path(index)).parent}: frames of different sizes: "
                f"{w}x{h} (frame 0) and about {native_got[0]}x{native_got[1]} "
                f"({Path(self._frame_path(index)).name})"
            )

    def read(self, index: int) -> np.ndarray:
        # Decode straight to RGB when nothing else is done to the image (saves a cvtColor).
        if (
            _IMREAD_RGB is not None
            and self.size == self.native_size
            and 0 <= index < self.num_frames
            and index not in self._bad
        ):
            image = cv2.imread(self._frame_path(index), _IMREAD_RGB)
            if image is not None:
                self._check_size(index, image, 1)
                return image
        return cv2.cvtColor(self.read_bgr(index), cv2.COLOR_BGR2RGB)


class FrameFolderSource(_ImageSequence):
    """A folder of frames (jpg/jpeg/png), in natural order (frame2 before frame10)."""

    kind = "frames"

    def __init__(self, path: str | os.PathLike, name: str | None = None, max_side: int = 0,
                 files: list[Path] | None = None):
        super().__init__(path, name, max_side)
        folder = Path(path)
        files = files if files is not None else _image_files(folder)
        if not files:
            raise VideoError(f"{path}: no frames ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
        self.files = [str(p) for p in files]
        self.num_frames = len(files)
        self.fps = 0.0  # a folder of frames carries no frame rate
        self.native_size = self._check_sizes(files)
        self._jpeg = all(p.lower().endswith(JPEG_EXTENSIONS) for p in self.files)

    def _check_sizes(self, files: list[Path]) -> tuple[int, int]:
        first = cv2.imread(str(files[0]), cv2.IMREAD_COLOR)
        if first is None:
            raise VideoError(f"{files[0]}: not a readable image (first frame of {files[0].parent})")
        size = (first.shape[1], first.shape[0])
        # Header-only reads: cheap enough to check every frame once, and far cheaper than a
        # crash in a DataLoader worker hours into training.
        for p in files[1:]:
            other = _image_size(p)
            if other is not None and other != size:
                raise VideoError(
                    f"{files[0].parent}: frames of different sizes: {size[0]}x{size[1]} "
                    f"({files[0].name}) and {other[0]}x{other[1]} ({p.name}); one folder must hold "
                    "one recording (resize the frames or split the folder)"
                )
        return size

    def _frame_path(self, index: int) -> str:
        return self.files[index]

    def _is_jpeg(self) -> bool:
        return self._jpeg


# =================================================================================== JPEG cache
@dataclass
class CacheEntry:
    """One source in a cache's ``index.json`` (the format ``extract`` writes)."""

    name: str  # display name (relative path of the original source)
    path: str  # the original video / frame folder
    frames: int
    fps: float
    width: int  # size of the cached frames
    height: int
    pattern: str  # frame file, relative to the cache dir: pattern.format(index)
    complete: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CacheEntry:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


def is_cache_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / CACHE_INDEX).is_file()


def read_cache_index(cache_dir: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``index.json`` of a cache (``VideoError`` when it is not one of ours)."""
    index_path = Path(cache_dir) / CACHE_INDEX
    try:
        data = json.loads(index_path.read_text())
    except (OSError, ValueError) as e:
        raise VideoError(f"{index_path}: unreadable cache index ({e})") from None
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
        raise VideoError(f"{index_path}: not a vidistill frame cache index")
    if int(data.get("version", 0)) > CACHE_VERSION:
        raise VideoError(f"{index_path}: cache format version {data.get('version')} is newer than this vidistill")
    data["sources"] = [CacheEntry.from_dict(s) for s in data.get("sources", [])]
    return data


class JpegCacheSource(_ImageSequence):
    """Frames pre-extracted by ``vidistill extract``: metadata from ``index.json``, no probing."""

    kind = "cache"

    def __init__(self, cache_dir: str | os.PathLike, entry: CacheEntry, max_side: int = 0):
        super().__init__(Path(cache_dir) / Path(entry.pattern).parent, entry.name, max_side)
        self.cache_dir = str(cache_dir)
        self.entry = entry
        self.original_path = entry.path
        self.num_frames = entry.frames
        self.fps = entry.fps
        self.native_size = (entry.width, entry.height)
        self._pattern = os.path.join(self.cache_dir, entry.pattern)

    def _frame_path(self, index: int) -> str:
        return self._pattern.format(index)

    def _is_jpeg(self) -> bool:
        return True


def open_cache(cache_dir: str | os.PathLike, max_side: int = 0) -> list[VideoSource]:
    """The sources of a cache; incomplete ones (interrupted extract) are skipped with a warning."""
    index = read_cache_index(cache_dir)
    sources: list[VideoSource] = []
    for entry in index["sources"]:
        if not entry.complete:
            log.warning(
                "%s: source %s was not completely extracted (interrupted?); skipping it "
                "(run `vidistill extract` again with the same arguments to finish)", cache_dir, entry.name,
            )
            continue
        sources.append(JpegCacheSource(cache_dir, entry, max_side))
    if not sources:
        raise VideoError(f"{cache_dir}: the frame cache holds no completely extracted source")
    return sources


# ==================================================================================== discovery
def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def _walk(root: Path, exclude: set[Path]) -> Iterable[tuple[str, Path, list[Path] | None]]:
    """(kind, path, frame files) for every source under ``root``, in natural order.

    kind: "video" (a file), "frames" (a folder holding images) or "cache" (a dir with index.json,
    not descended into: its frame folders belong to it).
    """
    if root.resolve() in exclude:
        return
    if is_cache_dir(root):
        yield "cache", root, None
        return
    entries = sorted((p for p in root.iterdir() if not p.name.startswith(".")), key=lambda p: natural_key(p.name))
    images = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    if images:
        yield "frames", root, images
    for p in entries:
        if p.is_file() and _is_video(p):
            yield "video", p, None
    for p in entries:
        if p.is_dir():
            yield from _walk(p, exclude)


def discover_sources(
    paths: Sequence[str | os.PathLike], max_side: int = 0, exclude: Sequence[str | os.PathLike] = ()
) -> list[VideoSource]:
    """All sources under ``paths``, in a deterministic (natural) order.

    A path may be a video file, a frame folder, a frame cache (a dir with ``index.json``), or a
    tree (a robot log dir) where each video file and each folder of frames is one source.
    ``exclude``: dirs to ignore (``extract`` excludes its own output when it lies inside an input).
    Raises ``VideoError`` naming the path for anything unusable that was named explicitly; a bad
    file found while walking a tree is skipped with a warning (an error only if nothing is left).
    Probing runs in threads (OpenCV releases the GIL): it matters for logs with thousands of episodes.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise VideoError("no video given (pass --video PATH, or set data.videos)")
    excluded = {Path(p).resolve() for p in exclude}
    # kind, path, name, frame files, named explicitly (vs found by walking a tree)
    found: list[tuple[str, Path, str, list[Path] | None, bool]] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise VideoError(f"{raw}: no such file or directory")
        if path.is_file():
            if path.suffix.lower() == ".json" and path.name == CACHE_INDEX:
                found.append(("cache", path.parent, path.parent.name, None, True))
            elif not _is_video(path):
                raise VideoError(
                    f"{raw}: not a video file (expected one of {', '.join(VIDEO_EXTENSIONS)}, "
                    "a folder of frames, or a frame cache)"
                )
            else:
                found.append(("video", path, path.name, None, True))
            continue
        before = len(found)
        for kind, p, files in _walk(path, excluded):
            rel = p.relative_to(path).as_posix()
            name = path.name if rel == "." else f"{path.name}/{rel}"
            found.append((kind, p, name, files, p == path))
        if len(found) == before:
            raise VideoError(
                f"{raw}: no video files ({', '.join(VIDEO_EXTENSIONS)}) or frame folders "
                f"({', '.join(IMAGE_EXTENSIONS)}) found"
            )

    def build(item: tuple[str, Path, str, list[Path] | None, bool]) -> list[VideoSource]:
        kind, p, name, files, explicit = item
        try:
            if kind == "cache":
                return open_cache(p, max_side)
            if kind == "frames":
                return [FrameFolderSource(p, name, max_side, files=files)]
            return [VideoFileSource(p, name, max_side)]
        except VideoError as e:
            if explicit:
                raise
            # Found while walking a log: one broken episode (a recording cut off by a power loss
            # is common on robots) must not stop training on the thousand good ones.
            log.warning("skipping %s", e)
            return []

    workers = min(8, len(found))
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            built = list(pool.map(build, found))  # re-raises the first failure, in path order
    else:
        built = [build(item) for item in found]

    if not any(built):
        raise VideoError(f"no usable video or frame folder in {', '.join(str(p) for p in paths)} (see warnings above)")
    sources: list[VideoSource] = []
    seen_paths: set[str] = set()
    seen_names: dict[str, int] = {}
    for group in built:
        for src in group:
            key = os.path.realpath(src.path) + (f"#{src.name}" if src.kind == "cache" else "")
            if key in seen_paths:
                log.warning("%s: given twice; using it once", src.path)
                continue
            seen_paths.add(key)
            count = seen_names.get(src.name, 0)
            seen_names[src.name] = count + 1
            if count:
                src.name = f"{src.name}#{count + 1}"
            sources.append(src)
    return sources
