"""The :class:`VideoSource` contract every format implements (see the package docstring), and the
read-time damage policy shared by all of them: a frame that fails to decode is replaced by its
nearest good neighbour."""

from __future__ import annotations

import logging
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from vidistill.errors import VideoError

if TYPE_CHECKING:
    from vidistill.data.sources.targets import Targets

log = logging.getLogger(__name__)

# A bad frame is replaced by a good one at most this many frames away; beyond that the damage is
# not a glitch and the clip is given up (the dataset picks another one).
MAX_SUBSTITUTE_DISTANCE = 8


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
    """One episode x camera of recorded frames. Subclasses set the metadata in ``__init__`` and
    implement :meth:`_decode` (see the package docstring for the whole contract)."""

    kind = "source"  # the format's name, as discovery and ``vidistill info`` call it
    # Channel order :meth:`_decode` returns: OpenCV's image decoders give BGR, PyAV gives RGB;
    # converting once, only when the caller wants the other order, saves a copy per frame.
    channel_order = "bgr"
    # What the log records beside these frames (actions, robot state), set by the format's
    # opener; None: the format records only frames (:mod:`.targets`).
    targets: Targets | None = None

    def __init__(self, path: str | os.PathLike, name: str | None = None, max_side: int = 0,
                 camera: str = "", episode: str = ""):
        self.path = str(path)
        self.name = name or Path(path).name
        self.max_side = int(max_side)
        # The log's own names; "" where the format has no such notion (a loose video file).
        self.camera = camera
        self.episode = episode
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
        return {"name": self.name, "path": self.path, "kind": self.kind, "camera": self.camera,
                "episode": self.episode, "frames": self.num_frames, "fps": self.fps, "width": w, "height": h}

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
    def _decode(self, index: int) -> np.ndarray | None:
        """Frame ``index`` as stored (:attr:`channel_order`, native size), or None when it cannot
        be decoded."""

    def _frame(self, index: int) -> np.ndarray:
        """Frame ``index`` in :attr:`channel_order` at :attr:`size`, bad frames substituted."""
        if not 0 <= index < self.num_frames:
            raise IndexError(f"{self.path}: frame {index} out of range (0..{self.num_frames - 1})")
        frame = self._decode(index) if index not in self._bad else None
        if frame is None:
            frame = self._substitute(index)
        return fit(frame, self.size)

    def read_bgr(self, index: int) -> np.ndarray:
        """Frame ``index`` as BGR uint8 (H, W, 3) at :attr:`size` (what ``cv2.imencode`` wants)."""
        frame = self._frame(index)
        return frame if self.channel_order == "bgr" else cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)

    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` as RGB uint8 (H, W, 3) at :attr:`size`."""
        frame = self._frame(index)
        return frame if self.channel_order == "rgb" else cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def read_many(self, indices: Sequence[int]) -> list[np.ndarray]:
        """Frames in the given order. Increasing indices are cheapest (sequential decode)."""
        return [self.read(i) for i in indices]

    def close(self) -> None:  # noqa: B027 (optional hook: image sources hold nothing open)
        """Release process-local resources (open decoders). Reading reopens them."""

    def _substitute(self, index: int) -> np.ndarray:
        """The nearest good frame for a frame that does not decode (earlier frames first)."""
        if index in self._bad:
            frame = self._decode(self._bad[index])
            if frame is not None:
                return frame
        for dist in range(1, MAX_SUBSTITUTE_DISTANCE + 1):
            for j in (index - dist, index + dist):
                if 0 <= j < self.num_frames and j not in self._bad:
                    frame = self._decode(j)
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




# ===================================================================== what a format provides
@dataclass(frozen=True)
class OpenOptions:
    """What the user asked for, passed to every format's opener."""

    max_side: int = 0  # downscale so the longer side is at most this (0 = native)
    cameras: tuple[str, ...] = ()  # the log's camera names to keep; () = every RGB camera
    fps: float = 0.0  # frame rate for formats that store none (HDF5); 0 = unknown


@dataclass
class Opened:
    """What a format's opener found at one path."""

    sources: list[VideoSource]
    # One line per thing left out on purpose ("observation.images.depth: depth map"), for `info`.
    skipped: list[str] = field(default_factory=list)
    # Every camera name at this path, also those not opened (``--camera``): for error messages.
    cameras: list[str] = field(default_factory=list)
    detail: str = ""  # e.g. the format's version ("v3.0"), shown by ``vidistill info``


@dataclass(frozen=True)
class Format:
    """One input format: how to recognise it and how to open it.

    ``claims(path)`` must be cheap (names and a few small files, no decoding): discovery calls it
    on every file and folder of a tree. ``open(path, name, options)`` builds the sources (one per
    episode x camera) from metadata; it raises ``VideoError`` naming the file and the problem.
    """

    name: str  # "video", "frames", ... (= VideoSource.kind of its sources)
    what: str  # for error messages: "a video file (.mp4, ...)"
    claims: Callable[[Path], bool]
    open: Callable[[Path, str, OpenOptions], Opened]
    nested: bool = False  # a claimed folder may hold more sources in sub-folders (frame folders)
