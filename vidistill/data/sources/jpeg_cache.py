"""A JPEG frame cache written by ``vidistill extract`` (``index.json`` + one folder of JPEGs per
source): metadata from the index, no probing. The writer is :mod:`vidistill.data.cache`."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vidistill.data.sources.base import Format, Opened, OpenOptions
from vidistill.data.sources.frame_folder import ImageSequenceSource
from vidistill.errors import VideoError

log = logging.getLogger(__name__)

CACHE_INDEX = "index.json"
CACHE_FORMAT = "vidistill-jpeg-cache"
CACHE_VERSION = 1

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
    camera: str = ""  # the original source's camera and episode (robot logs)
    episode: str = ""

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


class JpegCacheSource(ImageSequenceSource):
    """Frames pre-extracted by ``vidistill extract``: metadata from ``index.json``, no probing."""

    kind = "cache"

    def __init__(self, cache_dir: str | os.PathLike, entry: CacheEntry, max_side: int = 0):
        super().__init__(Path(cache_dir) / Path(entry.pattern).parent, entry.name, max_side,
                         camera=entry.camera, episode=entry.episode)
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


def open_cache(cache_dir: str | os.PathLike, max_side: int = 0) -> Opened:
    """The sources of a cache; incomplete ones (interrupted extract) are skipped with a warning."""
    index = read_cache_index(cache_dir)
    opened = Opened([])
    for entry in index["sources"]:
        if not entry.complete:
            log.warning(
                "%s: source %s was not completely extracted (interrupted?); skipping it "
                "(run `vidistill extract` again with the same arguments to finish)", cache_dir, entry.name,
            )
            opened.skipped.append(f"{cache_dir}: {entry.name}: not completely extracted")
            continue
        opened.sources.append(JpegCacheSource(cache_dir, entry, max_side))
    if not opened.sources:
        raise VideoError(f"{cache_dir}: the frame cache holds no completely extracted source")
    return opened


def _claims(path: Path) -> bool:
    return is_cache_dir(path) or (path.name == CACHE_INDEX and path.is_file() and is_cache_dir(path.parent))


def _open(path: Path, name: str, options: OpenOptions) -> Opened:
    return open_cache(path.parent if path.is_file() else path, options.max_side)


FORMAT = Format("cache", f"a frame cache written by `vidistill extract` ({CACHE_INDEX})", _claims, _open)


