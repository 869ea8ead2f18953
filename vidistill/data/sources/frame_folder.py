"""A folder of frames (jpg/jpeg/png) is one source, in natural order; :class:`ImageSequenceSource`
is the reading shared by every source made of one image file per frame (also the JPEG cache).
OpenCV decodes the images: libjpeg's DCT scaling decodes straight at 1/2, 1/4, 1/8 size.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from vidistill.data.sources.base import Format, Opened, OpenOptions, VideoSource, natural_key
from vidistill.errors import VideoError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")  # frame folders and eval datasets alike
JPEG_EXTENSIONS = (".jpg", ".jpeg")

_IMREAD_RGB: int | None = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.10: no cvtColor

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


class ImageSequenceSource(VideoSource):
    """Shared reading for sources made of one image file per frame."""

    def _frame_path(self, index: int) -> str:
        raise NotImplementedError

    def _is_jpeg(self) -> bool:
        return False

    def _decode(self, index: int) -> np.ndarray | None:
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


class FrameFolderSource(ImageSequenceSource):
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




def _claims(path: Path) -> bool:
    return path.is_dir() and any(
        p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file() for p in path.iterdir()
    )


def _open(path: Path, name: str, options: OpenOptions) -> Opened:
    return Opened([FrameFolderSource(path, name, options.max_side)])


# nested: a folder of frames may also hold sub-folders that are sources of their own.
FORMAT = Format("frames", f"a folder of frames ({', '.join(IMAGE_EXTENSIONS)})", _claims, _open, nested=True)
