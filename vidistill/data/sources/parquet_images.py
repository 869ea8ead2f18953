"""Images stored as encoded bytes (PNG, JPEG) in a parquet column, one row per frame: LeRobot's
``dtype: image`` features (a Hugging Face ``Image`` struct ``{bytes, path}``). One source is one
episode's contiguous rows of one column.

Random access reads the row group holding the frame (parquet's unit of I/O; Hugging Face datasets,
which LeRobot writes with, puts 100 image rows in a group) and keeps the last two groups read as
Arrow arrays (no copy of the other rows' bytes), so a clip's K frames cost one or two row-group
reads and K image decodes (OpenCV). The parquet file is opened lazily in each process and shared
by the episodes it holds (:class:`~.handles.OpenFiles`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vidistill.data.sources.base import VideoSource
from vidistill.data.sources.handles import OpenFiles
from vidistill.errors import VideoError


def episode_rows(path: Path) -> Callable[[int], tuple[int, int]]:
    """For a data parquet file: episode index -> its rows [start, stop) (contiguous, as LeRobot writes)."""
    import pyarrow.parquet as pq

    try:
        episodes = pq.read_table(path, columns=["episode_index"]).column(0).to_numpy()
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise VideoError(f"{path}: unreadable data file ({e})") from None

    def rows(episode: int) -> tuple[int, int]:
        where = np.flatnonzero(episodes == episode)
        if len(where) == 0:
            raise VideoError(f"{path}: no rows of episode {episode}")
        if where[-1] - where[0] + 1 != len(where):
            raise VideoError(f"{path}: the rows of episode {episode} are not contiguous")
        return int(where[0]), int(where[-1]) + 1

    return rows


class _ParquetFile:
    """One open parquet file in one process, with the last two row groups read per column."""

    def __init__(self, path: str):
        import pyarrow.parquet as pq

        try:
            self.file = pq.ParquetFile(path)
        except Exception as e:  # pyarrow raises several types for a damaged file
            raise VideoError(f"{path}: unreadable data file ({e})") from None
        meta = self.file.metadata
        sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        self.group_starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.columns = set(self.file.schema_arrow.names)
        self._groups: dict[tuple[int, str], Any] = {}

    def close(self) -> None:
        self._groups = {}
        self.file.close()

    def image_bytes(self, column: str, row: int) -> bytes | None:
        group = int(np.searchsorted(self.group_starts, row, side="right")) - 1
        key = (group, column)
        if key not in self._groups:
            try:
                values = self.file.read_row_group(group, columns=[column]).column(0).combine_chunks()
            except Exception:  # a damaged row group: its frames are bad frames
                return None
            if len(self._groups) >= 2:
                self._groups.pop(next(iter(self._groups)))
            self._groups[key] = values.field("bytes") if hasattr(values, "field") else values
        return self._groups[key][row - int(self.group_starts[group])].as_py()


# Open parquet files per process (a v3.0 data file holds many episodes: they share one).
_OPEN = OpenFiles(8)


class ParquetImageSource(VideoSource):
    """Rows ``start .. stop-1`` of the image column ``column`` of one parquet file."""

    kind = "lerobot-image"
    channel_order = "bgr"  # cv2.imdecode

    def __init__(self, path: str | os.PathLike, name: str, column: str, start: int, stop: int, fps: float = 0.0,
                 max_side: int = 0, episode: str = ""):
        super().__init__(path, name, max_side, camera=column, episode=episode)
        self.column, self.start = column, int(start)
        self.num_frames = int(stop) - int(start)
        self.fps = float(fps)
        if column not in self._file().columns:
            raise VideoError(f"{path}: no column {column!r}")
        head = self._file().image_bytes(column, self.start) or b""
        first = self._decode(0)
        if first is None:
            raise VideoError(f"{path}: the first image of {column} (row {start}) is not a readable image")
        self.native_size = (first.shape[1], first.shape[0])
        self.codec = "png" if head.startswith(b"\x89PNG") else "jpeg" if head.startswith(b"\xff\xd8") else "image"
        self.close()  # nothing stays open in the process that builds the dataset

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "codec": f"{self.codec} in parquet"}

    def _file(self) -> _ParquetFile:
        return _OPEN.get(self.path, _ParquetFile)

    def close(self) -> None:
        _OPEN.close(self.path)

    def _decode(self, index: int) -> np.ndarray | None:
        data = self._file().image_bytes(self.column, self.start + index)
        if not data:
            return None
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
