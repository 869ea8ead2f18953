"""LeRobot datasets (``meta/info.json``, codebase v2.0/v2.1/v3.0), read directly with json and
pyarrow: the ``lerobot`` package pins torch/numpy/opencv/av versions that conflict with ours.

One source per episode x camera. Cameras are the ``features`` of ``info.json`` with
``dtype: video`` (mp4 files, decoded by :mod:`.video_file`) or ``dtype: image`` (PNG bytes inside
the data parquet files, decoded by OpenCV); depth maps (``video.is_depth_map``) and images
without 3 channels are skipped, each with a reason that ``vidistill info`` prints.

Layouts (huggingface/lerobot src/lerobot/datasets/utils.py):

* v2.x: one mp4 per episode and camera at ``info["video_path"]`` (default
  ``videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4``, chunk =
  episode // ``chunks_size``); episodes and lengths in ``meta/episodes.jsonl``; one data parquet
  per episode at ``info["data_path"]``.
* v3.0: ``videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4`` concatenates
  many episodes; ``meta/episodes/chunk-*/file-*.parquet`` gives per episode ``episode_index``,
  ``length``, ``data/chunk_index``, ``data/file_index`` and per camera
  ``videos/{key}/chunk_index``, ``file_index``, ``from_timestamp``. Frame i of episode e is file
  frame ``round(from_timestamp * fps) + i`` with that camera's own offsets (rounded to a frame:
  ``from_timestamp`` drifts on long files, lerobot #3177). Each file is probed once and shared
  by its episodes.

Damage: a missing or broken ``info.json`` or episode table is an error naming the file; videos
missing for some episodes skip those episodes (a warning names how many and the first); for all
of them, an error. A video shorter than its episodes (truncated) keeps what decodes, with a
warning saying how many frames were lost.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vidistill.data.sources.base import Format, Opened, OpenOptions, VideoSource
from vidistill.data.sources.parquet_images import ParquetImageSource, episode_rows
from vidistill.data.sources.targets import Targets, as_rows
from vidistill.data.sources.video_file import VideoFileSource, VideoIndex, probe_video
from vidistill.errors import VideoError

log = logging.getLogger(__name__)

INFO = Path("meta") / "info.json"
VERSIONS = ("v2.0", "v2.1", "v3.0")
V2_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
V2_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
V3_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
V3_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"


@dataclass
class Episode:
    index: int
    length: int
    row: dict[str, Any]  # the episode's metadata (v3: the episodes parquet row)
    table: Path | None = None  # the file that row comes from


# ========================================================================================= info
def read_info(root: Path) -> dict[str, Any]:
    """``meta/info.json``, checked for what this reader needs."""
    path = root / INFO
    if not path.is_file():
        raise VideoError(f"{path}: missing (a LeRobot dataset needs meta/info.json; incomplete download?)")
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise VideoError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(info, dict):
        raise VideoError(f"{path}: not a JSON object")
    missing = [k for k in ("codebase_version", "fps", "features") if k not in info]
    if missing or not isinstance(info.get("features"), dict):
        raise VideoError(f"{path}: missing {', '.join(missing) or 'features'} (not a LeRobot info.json?)")
    if info["codebase_version"] not in VERSIONS:
        raise VideoError(
            f"{path}: codebase_version {info['codebase_version']!r} is not supported ({', '.join(VERSIONS)}); "
            "convert it with lerobot's conversion scripts"
        )
    return info


def cameras_of(info: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """(video cameras, image cameras, skipped lines) from the features, in info.json order."""
    videos, images, skipped = [], [], []
    for key, feature in info["features"].items():
        dtype = feature.get("dtype") if isinstance(feature, dict) else None
        if dtype not in ("video", "image"):
            continue
        meta = feature.get("info") or feature.get("video_info") or {}
        shape = list(feature.get("shape") or [])
        names = list(feature.get("names") or [])
        channels = shape[names.index("channels")] if "channels" in names and len(shape) == len(names) else (
            shape[-1] if shape else 3)
        if meta.get("video.is_depth_map") or meta.get("is_depth_map"):
            skipped.append(f"{key}: depth map (video.is_depth_map)")
        elif channels != 3:
            skipped.append(f"{key}: {channels} channel(s), not an RGB camera")
        else:
            (videos if dtype == "video" else images).append(key)
    return videos, images, skipped


# ===================================================================================== episodes
def read_episodes(root: Path, info: dict[str, Any]) -> list[Episode]:
    if info["codebase_version"] == "v3.0":
        return _episodes_v3(root)
    return _episodes_v2(root)


def _episodes_v2(root: Path) -> list[Episode]:
    path = root / "meta" / "episodes.jsonl"
    if not path.is_file():
        raise VideoError(f"{path}: missing (a LeRobot v2 dataset lists its episodes there)")
    episodes = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            episodes.append(Episode(int(row["episode_index"]), int(row["length"]), row))
        except (ValueError, KeyError, TypeError) as e:
            raise VideoError(f"{path}: line {n} is not an episode record ({e})") from None
    return sorted(episodes, key=lambda e: e.index)


def _episodes_v3(root: Path) -> list[Episode]:
    import pyarrow.parquet as pq

    folder = root / "meta" / "episodes"
    files = sorted(folder.glob("chunk-*/file-*.parquet"))
    if not files:
        raise VideoError(f"{folder}: no chunk-*/file-*.parquet (a LeRobot v3.0 dataset lists its episodes there)")
    episodes = []
    for path in files:
        try:
            schema = pq.read_schema(path)
            columns = [c for c in schema.names if not c.startswith("stats/")]
            table = pq.read_table(path, columns=columns)
        except Exception as e:  # pyarrow raises several types for a damaged file
            raise VideoError(f"{path}: unreadable episode table ({e})") from None
        for row in table.to_pylist():
            try:
                episodes.append(Episode(int(row["episode_index"]), int(row["length"]), row, path))
            except (KeyError, TypeError, ValueError):
                raise VideoError(f"{path}: rows without episode_index / length") from None
    return sorted(episodes, key=lambda e: e.index)


# ====================================================================================== sources
def _video_files(root: Path, info: dict[str, Any], camera: str, episodes: list[Episode]) -> list[tuple[Episode, Path]]:
    """(episode, mp4 holding it) for one camera."""
    if info["codebase_version"] == "v3.0":
        template = info.get("video_path") or V3_VIDEO_PATH
        out = []
        for ep in episodes:
            try:
                chunk, file = int(ep.row[f"videos/{camera}/chunk_index"]), int(ep.row[f"videos/{camera}/file_index"])
            except (KeyError, TypeError, ValueError):
                raise VideoError(
                    f"{ep.table}: episode {ep.index} has no videos/{camera}/chunk_index, file_index"
                ) from None
            if ep.row.get(f"videos/{camera}/from_timestamp") is None:  # not 0: frame 0 is another episode's
                raise VideoError(
                    f"{ep.table}: episode {ep.index} has no videos/{camera}/from_timestamp (where the episode "
                    f"starts in {template.format(video_key=camera, chunk_index=chunk, file_index=file)}, a file "
                    "that may hold several episodes)"
                )
            out.append((ep, root / template.format(video_key=camera, chunk_index=chunk, file_index=file)))
        return out
    template = info.get("video_path") or V2_VIDEO_PATH
    chunks = int(info.get("chunks_size") or 1000)
    return [(ep, root / template.format(episode_chunk=ep.index // chunks, episode_index=ep.index, video_key=camera))
            for ep in episodes]


def _probe_all(paths: list[Path]) -> dict[Path, VideoIndex | VideoError]:
    """Each distinct file probed once (a few threads: a dataset has thousands of files)."""
    def probe(p: Path) -> VideoIndex | VideoError:
        try:
            return probe_video(p)
        except VideoError as e:
            return e

    unique = sorted(set(paths))
    with ThreadPoolExecutor(min(4, max(1, len(unique)))) as pool:
        return dict(zip(unique, pool.map(probe, unique), strict=True))


def _video_sources(root: Path, name: str, info: dict[str, Any], camera: str, episodes: list[Episode],
                   options: OpenOptions, notes: list[str]) -> list[VideoSource]:
    located = _video_files(root, info, camera, episodes)
    missing = [p for _, p in located if not p.is_file()]
    if missing and len(missing) == len(located):
        raise VideoError(
            f"{root}: videos of {camera} missing ({len(missing)} files, e.g. {missing[0]}); "
            "download the dataset with its videos"
        )
    if missing:
        log.warning("%s: %d video file(s) of %s missing (e.g. %s); skipping those episodes",
                    root, len(missing), camera, missing[0])
        notes.append(f"{camera}: {len(missing)} episode video(s) missing, e.g. {missing[0]}")
    probed = _probe_all([p for _, p in located if p.is_file()])
    v3 = info["codebase_version"] == "v3.0"
    sources: list[VideoSource] = []
    lost = 0
    for ep, path in located:
        index = probed.get(path)
        if index is None:
            continue
        if isinstance(index, VideoError):
            notes.append(f"{camera}: episode {ep.index}: {index}")
            continue
        # The rate LeRobot computed from_timestamp with (the feature's, else the dataset's), not
        # the container's average (an estimate on concatenated files).
        fps = float((info["features"][camera].get("info") or {}).get("video.fps") or info["fps"] or index.fps)
        first = round(float(ep.row[f"videos/{camera}/from_timestamp"]) * fps) if v3 else 0
        src = VideoFileSource(path, f"{name}/{camera}/episode_{ep.index:06d}", options.max_side, camera=camera,
                              episode=str(ep.index), index=index, first=first, length=ep.length)
        lost += ep.length - len(src)
        if len(src) > 0:
            sources.append(src)
    errors = [n for n in notes if n.startswith(f"{camera}: episode")]
    if errors:
        log.warning("%s: %d episode video(s) of %s unreadable, skipped: %s", root, len(errors), camera, errors[0])
    if lost:
        log.warning("%s: %s: the videos hold %d frames fewer than the episode table says (truncated?); "
                    "training on what decodes", root, camera, lost)
        notes.append(f"{camera}: {lost} frames listed in the episode table do not decode (truncated video)")
    return sources


def _data_file(root: Path, info: dict[str, Any], ep: Episode) -> Path:
    """The data parquet file holding ``ep``'s rows (its image columns, actions, state)."""
    if info["codebase_version"] == "v3.0":
        template = info.get("data_path") or V3_DATA_PATH
        return root / template.format(chunk_index=int(ep.row.get("data/chunk_index", 0)),
                                      file_index=int(ep.row.get("data/file_index", 0)))
    template = info.get("data_path") or V2_DATA_PATH
    return root / template.format(episode_chunk=ep.index // int(info.get("chunks_size") or 1000),
                                  episode_index=ep.index)


def _image_sources(root: Path, name: str, info: dict[str, Any], camera: str, episodes: list[Episode],
                   options: OpenOptions, notes: list[str]) -> list[VideoSource]:
    sources: list[VideoSource] = []
    rows_cache: dict[Path, Callable[[int], tuple[int, int]]] = {}
    for ep in episodes:
        path = _data_file(root, info, ep)
        if not path.is_file():
            notes.append(f"{camera}: episode {ep.index}: data file missing: {path}")
            continue
        try:
            if path not in rows_cache:
                rows_cache[path] = episode_rows(path)
            start, stop = rows_cache[path](ep.index)
            src = ParquetImageSource(path, f"{name}/{camera}/episode_{ep.index:06d}", camera, start, stop,
                                     fps=float(info["fps"]), max_side=options.max_side, episode=str(ep.index))
        except VideoError as e:
            notes.append(f"{camera}: episode {ep.index}: {e}")
            continue
        sources.append(src)
    if not sources and episodes:
        raise VideoError(f"{root}: no readable images of {camera}: {notes[-1] if notes else 'no data files'}")
    return sources


def open_lerobot(root: Path, name: str, options: OpenOptions) -> Opened:
    info = read_info(root)
    video_cams, image_cams, skipped = cameras_of(info)
    cameras = video_cams + image_cams
    if not cameras:
        raise VideoError(f"{root / INFO}: no RGB camera among the features"
                         + (f" ({'; '.join(skipped)})" if skipped else ""))
    episodes = read_episodes(root, info)
    if not episodes:
        raise VideoError(f"{root}: the episode table lists no episodes")
    wanted = [c for c in cameras if not options.cameras or c in options.cameras]
    skipped = [f"{root}: {line}" for line in skipped]
    sources: list[VideoSource] = []
    for camera in wanted:
        notes: list[str] = []
        build = _video_sources if camera in video_cams else _image_sources
        sources += build(root, name, info, camera, episodes, options, notes)
        skipped += [f"{root}: {line}" for line in notes]
    # Episode-major order (all cameras of episode 0, then episode 1...): what a user reads in `info`.
    sources.sort(key=lambda s: (int(s.episode), cameras.index(s.camera)))
    _attach_targets(root, info, episodes, sources)
    return Opened(sources, skipped, cameras, detail=info["codebase_version"])


# ====================================================================================== targets
# Columns every LeRobot data file has for bookkeeping: not something a robot recorded.
BOOKKEEPING = ("timestamp", "frame_index", "episode_index", "index", "task_index")


def target_names(info: dict[str, Any]) -> list[str]:
    """The numeric per-frame features (``action``, ``observation.state``, ...), in info.json order."""
    return [key for key, feature in info["features"].items()
            if isinstance(feature, dict) and feature.get("dtype") not in ("video", "image", "string")
            and key not in BOOKKEEPING]


class LeRobotTargets(Targets):
    """One episode's numeric columns of a data parquet file, row ``i`` = the row whose
    ``frame_index`` is ``i`` (frame ``i`` of every camera of the episode)."""

    def __init__(self, data: Path, episode: int, names: list[str]):
        self.data, self.episode, self._names = data, episode, names
        self.file = str(data)

    def names(self) -> list[str]:
        return list(self._names)

    def read(self, name: str) -> np.ndarray:
        import pyarrow.parquet as pq

        if name not in self._names:
            raise KeyError(name)
        try:
            have = set(pq.read_schema(self.data).names)
            if name not in have:
                raise VideoError(f"{self.data}: info.json lists the feature {name!r} but the data file has no such column")
            columns = [name] + [c for c in ("episode_index", "frame_index") if c in have]
            table = pq.read_table(self.data, columns=columns)
        except VideoError:
            raise
        except Exception as e:  # pyarrow raises several types for a damaged file
            raise VideoError(f"{self.data}: unreadable data file ({e})") from None
        rows = np.arange(table.num_rows)
        if "episode_index" in table.column_names:
            rows = np.flatnonzero(table.column("episode_index").to_numpy() == self.episode)
        if "frame_index" in table.column_names:  # align by the frame each row belongs to
            frames = table.column("frame_index").to_numpy()[rows]
            rows = rows[np.argsort(frames, kind="stable")]
            if not np.array_equal(np.sort(frames), np.arange(len(frames))):
                raise VideoError(f"{self.data}: episode {self.episode}: frame_index is not 0..{len(frames) - 1} "
                                 "(rows missing or repeated)")
        values = table.column(name).take(rows).to_pylist()
        if any(v is None for v in values):
            raise VideoError(f"{self.data}: episode {self.episode}: {name} has empty rows")
        try:
            return as_rows(np.asarray(values, dtype=np.float64))
        except (TypeError, ValueError):
            raise VideoError(f"{self.data}: {name} is not a fixed-size numeric column") from None


def _attach_targets(root: Path, info: dict[str, Any], episodes: list[Episode], sources: list[VideoSource]) -> None:
    names = target_names(info)
    if not names:
        return
    by_index = {ep.index: ep for ep in episodes}
    for src in sources:
        ep = by_index[int(src.episode)]
        src.targets = LeRobotTargets(_data_file(root, info, ep), ep.index, names)


def _claims(path: Path) -> bool:
    return path.is_dir() and (path / "meta").is_dir() and (
        (path / INFO).exists() or (path / "videos").is_dir() or (path / "data").is_dir()
    )


FORMAT = Format("lerobot", "a LeRobot dataset (meta/info.json)", _claims, open_lerobot)
