"""Images stored as encoded bytes (PNG, JPEG) in a parquet column, one row per frame: LeRobot's
``dtype: image`` features (a Hugging Face ``Image`` struct ``{bytes, path}``). One source is one
episode's contiguous rows of one column.

Random access reads the row group holding the frame (parquet's unit of I/O; LeRobot writes a few
hundred rows per group) and keeps the last one decoded from parquet, so a clip's K frames cost one
row-group read and K image decodes (OpenCV). The parquet file is opened lazily in each process.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vidistill.data.sources.base import VideoSource
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
        self._reset_process_state()
        groups = self._file().metadata
        sizes = [groups.row_group(g).num_rows for g in range(groups.num_row_groups)]
        self._group_starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        if column not in self._file().schema_arrow.names:
            raise VideoError(f"{path}: no column {column!r}")
        first = self._decode(0)
        if first is None:
            raise VideoError(f"{path}: the first image of {column} (row {start}) is not a readable image")
        self.native_size = (first.shape[1], first.shape[0])
        head = self._group_bytes[self.start - int(self._group_starts[self._group])] or b""
        self.codec = "png" if head.startswith(b"\x89PNG") else "jpeg" if head.startswith(b"\xff\xd8") else "image"
        self.close()  # nothing stays open in the process that builds the dataset

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "codec": f"{self.codec} in parquet"}

    def _process_local(self) -> tuple[str, ...]:
        return (*super()._process_local(), "_parquet", "_pid", "_group", "_group_bytes")

    def _reset_process_state(self) -> None:
        super()._reset_process_state()
        self._parquet: Any = None
        self._pid = -1
        self._group = -1
        self._group_bytes: list[bytes | None] = []

    def _file(self) -> Any:
        if self._parquet is None or self._pid != os.getpid():
            import pyarrow.parquet as pq

            try:
                self._parquet = pq.ParquetFile(self.path)
            except Exception as e:
                raise VideoError(f"{self.path}: unreadable data file ({e})") from None
            self._pid, self._group = os.getpid(), -1
        return self._parquet

    def close(self) -> None:
        self._parquet, self._group, self._group_bytes = None, -1, []

    def _decode(self, index: int) -> np.ndarray | None:
        row = self.start + index
        group = int(np.searchsorted(self._group_starts, row, side="right")) - 1
        if group != self._group:
            try:
                table = self._file().read_row_group(group, columns=[self.column])
            except VideoError:
                raise
            except Exception:  # a damaged row group: its frames are bad frames
                return None
            column = table.column(0).combine_chunks()
            values = column.field("bytes") if hasattr(column, "field") else column
            self._group, self._group_bytes = group, values.to_pylist()
        data = self._group_bytes[row - int(self._group_starts[group])]
        if not data:
            return None
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
