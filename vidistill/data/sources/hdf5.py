"""HDF5 episode files (``.hdf5`` / ``.h5``, read with h5py): robomimic, ALOHA / ACT, and any file
holding image datasets.

Layouts, recognised in this order:

* robomimic: ``data/demo_N/obs/<camera>_image`` uint8 (N, H, W, 3); one source per demo x camera,
  demos in numeric order (demo_2 before demo_10). ``*_depth`` observations are skipped.
* ALOHA / ACT: one file per episode, ``observations/images/<camera>`` either raw (T, H, W, 3) or
  JPEG bytes zero-padded to (T, padded) (the ``compress`` variant). Its ``compress_len``
  (n_cams, T, float) lists the byte lengths in the recorder's camera order, which the file does
  not store; it is not needed either: a JPEG ends at its end-of-image marker, so the decoder
  stops there and the padding is never read. Colours: the recorders store the camera's RGB
  arrays raw, and compress them by handing the same RGB arrays to ``cv2.imencode``, which takes
  them for BGR (``aloha_scripts/record_episodes.py``, ACT++ ``compress_data.py``); they decode
  with ``cv2.imdecode(buf, 1)`` and no conversion (LeRobot's and openpi's ALOHA converters do
  the same). So these JPEGs are read the recorders' way: a raw and a compressed episode of one
  recorder give the same colours. Encoded images in other layouts are read in their own colours.
* anything else: every uint8 dataset shaped (T, H, W, 3), camera = its name, episode = its group.
  A dataset of another shape is used when named with ``--camera`` by its path in the file
  (``--camera obs/front``): (T, H, W), (T, H, W, 1|3|4) uint8, or encoded images (JPEG/PNG bytes
  zero-padded to (T, N), or variable-length).

HDF5 stores no frame rate: ``fps`` is ``--fps`` when given, else robomimic's ``control_freq``
when its ``env_args`` say it, else 0 (unknown); clip strides count frames either way.

Files are opened only briefly to read the layout; each process (DataLoader worker) opens its own
handle on first read (:mod:`.handles`), never one inherited through a fork.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vidistill.data.sources.base import Format, Opened, OpenOptions, VideoSource, natural_key
from vidistill.data.sources.handles import OpenFiles
from vidistill.data.sources.targets import Targets, as_rows
from vidistill.errors import VideoError

log = logging.getLogger(__name__)

H5_EXTENSIONS = (".hdf5", ".h5")
MAX_OPEN_FILES = 8
MAX_OPEN_DATASETS = 4  # per open file; each keeps its own chunk cache
# robomimic writes gzip with h5py's automatic chunks, which span many frames (84x84 images:
# (50, 21, 21, 1)): reading one frame decompresses 50. A dataset whose chunks span frames keeps a
# chunk cache holding all of it when it fits (a robomimic demo at 84x84: ~4 MB), else one slab of
# chunks across the frame axis, so the other frames of a clip (and a sequential extract) reuse
# what was decompressed; its dataset object stays open between reads (the cache lives in it).
MAX_CHUNK_CACHE = 32 * 1024**2
CHUNK_CACHE_SLOTS = 10007  # a prime well above the number of chunks that fit (HDF5's advice)
_IMREAD_RGB: int | None = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.10
_GREY_TO_RGB = {1: cv2.COLOR_GRAY2RGB, 4: cv2.COLOR_RGBA2RGB}


def _chunk_cache_bytes(ds: Any) -> int:
    """Chunk cache for a dataset: all of it if it fits, else one slab of chunks across the frame
    axis (0: chunks of one frame, nothing to reuse)."""
    if not ds.chunks or ds.chunks[0] <= 1 or ds.compression is None:
        return 0
    frame_bytes = int(np.prod(ds.shape[1:])) * ds.dtype.itemsize
    whole = int(1.1 * ds.shape[0] * frame_bytes)
    return whole if whole <= MAX_CHUNK_CACHE else min(MAX_CHUNK_CACHE, int(1.25 * ds.chunks[0] * frame_bytes))


class _OpenFile:
    """An open HDF5 file and the datasets read last (kept open: each holds its chunk cache)."""

    def __init__(self, path: str):
        import h5py

        self._h5py = h5py
        self.file = h5py.File(path, "r")
        self._datasets: OrderedDict[str, Any] = OrderedDict()

    def dataset(self, name: str) -> Any:
        ds = self._datasets.get(name)
        if ds is None:
            ds = self.file[name]
            cache = _chunk_cache_bytes(ds)
            if cache:  # reopen with its own chunk cache (the file's default is 1 MiB)
                dapl = self._h5py.h5p.create(self._h5py.h5p.DATASET_ACCESS)
                dapl.set_chunk_cache(CHUNK_CACHE_SLOTS, cache, 1.0)
                ds = self._h5py.Dataset(self._h5py.h5d.open(self.file.id, ds.name.encode(), dapl))
            self._datasets[name] = ds
        self._datasets.move_to_end(name)
        while len(self._datasets) > MAX_OPEN_DATASETS:
            self._datasets.popitem(last=False)
        return ds

    def close(self) -> None:
        self._datasets.clear()
        self.file.close()


_OPEN = OpenFiles(MAX_OPEN_FILES)


class Hdf5Source(VideoSource):
    """One image dataset (one episode x camera) of an HDF5 file: raw pixels or encoded images."""

    kind = "hdf5"
    channel_order = "rgb"

    def __init__(self, path: str, name: str, max_side: int, *, dataset: str, camera: str, episode: str,
                 frames: int, size: tuple[int, int], fps: float, encoded: bool, rgb_imencoded: bool = False):
        super().__init__(path, name, max_side, camera=camera, episode=episode)
        self.dataset, self.encoded = dataset, encoded
        self.rgb_imencoded = rgb_imencoded  # JPEGs of RGB arrays written by cv2.imencode (ALOHA / ACT)
        self.num_frames = frames
        self.native_size = size
        self.fps = fps

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "codec": "jpeg/png bytes" if self.encoded else "raw uint8",
                "dataset": self.dataset}

    def _decode(self, index: int) -> np.ndarray | None:
        try:
            item = np.asarray(_OPEN.get(self.path, _OpenFile).dataset(self.dataset)[index])
        except (OSError, KeyError, ValueError):  # a damaged chunk: substituted by a neighbour
            return None
        if self.encoded:
            return _decode_bytes(item, self.rgb_imencoded)
        if item.ndim == 2:
            return cv2.cvtColor(item, cv2.COLOR_GRAY2RGB)
        if item.shape[-1] in _GREY_TO_RGB:
            return cv2.cvtColor(item, _GREY_TO_RGB[item.shape[-1]])
        return item

    def close(self) -> None:
        _OPEN.close(self.path)


def _decode_bytes(data: np.ndarray, rgb_imencoded: bool = False) -> np.ndarray | None:
    """JPEG/PNG bytes (trailing zero padding is never read) as RGB uint8 (H, W, 3).

    ``rgb_imencoded``: the bytes are ``cv2.imencode`` of an RGB array (ALOHA / ACT), so cv2's
    own (B, G, R)-ordered decode hands that array back as it was."""
    data = np.ascontiguousarray(data, np.uint8).reshape(-1)
    if data.size == 0:
        return None
    if rgb_imencoded:
        return cv2.imdecode(data, cv2.IMREAD_COLOR)
    if _IMREAD_RGB is not None:
        return cv2.imdecode(data, _IMREAD_RGB)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


# ================================================================================== layouts
@dataclass
class _Found:
    """Image datasets of one file: (dataset path, camera, episode), and what was left out."""

    images: list[tuple[str, str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _is_dataset(obj: Any) -> bool:
    import h5py

    return isinstance(obj, h5py.Dataset)


def _is_rgb(ds: Any) -> bool:
    """The generic rule: uint8 (T, H, W, 3) with at least one frame."""
    return ds.dtype == np.uint8 and ds.ndim == 4 and ds.shape[-1] == 3 and ds.shape[0] > 0


def _is_encoded(ds: Any) -> bool:
    """Encoded images: uint8 rows (T, N) or variable-length uint8 (T,)."""
    import h5py

    if ds.dtype == np.uint8 and ds.ndim == 2:
        return True
    return ds.ndim == 1 and h5py.check_vlen_dtype(ds.dtype) == np.dtype(np.uint8)


def _describe(ds: Any) -> str:
    return f"{ds.name.lstrip('/')} {tuple(ds.shape)} {ds.dtype}"


def _robomimic(f: Any) -> _Found:
    found = _Found()
    demos = sorted((k for k in f["data"] if "obs" in f["data"][k]), key=natural_key)
    for demo in demos:
        obs = f["data"][demo]["obs"]
        for key in sorted(obs, key=natural_key):
            ds = obs[key]
            if key.endswith("_depth"):
                found.skipped.append(f"data/{demo}/obs/{key}: depth map")
            elif key.endswith("_image"):
                if _is_dataset(ds) and _is_rgb(ds):
                    found.images.append((ds.name, key, demo))
                else:
                    found.skipped.append(f"{_describe(ds)}: not uint8 (N, H, W, 3)")
    return found


def _aloha(f: Any) -> _Found:
    found = _Found()
    group = f["observations"]["images"]
    for cam in sorted(group, key=natural_key):
        ds = group[cam]
        if _is_dataset(ds) and (_is_rgb(ds) or _is_encoded(ds)):
            found.images.append((ds.name, cam, ""))
        else:
            found.skipped.append(f"{_describe(ds) if _is_dataset(ds) else cam}: not an image dataset")
    return found


def _datasets(f: Any) -> Iterator[Any]:
    out: list[Any] = []
    f.visititems(lambda _, obj: out.append(obj) if _is_dataset(obj) else None)
    return iter(sorted(out, key=lambda ds: natural_key(ds.name)))


def _generic(f: Any) -> _Found:
    found = _Found()
    for ds in _datasets(f):
        if _is_rgb(ds):
            parent = ds.parent.name.strip("/")
            found.images.append((ds.name, ds.name.rsplit("/", 1)[-1], parent))
    return found


def _named(f: Any, path: Path, cameras: tuple[str, ...], found: _Found) -> None:
    """Datasets the user named by their path in the file (``--camera obs/front``)."""
    have = {c for _, c, _ in found.images}
    for name in cameras:
        if name in have or name not in f:
            continue
        ds = f[name]
        shape_ok = ds.ndim in (3, 4) and (ds.ndim == 3 or ds.shape[-1] in (1, 3, 4))
        if not (_is_dataset(ds) and ((ds.dtype == np.uint8 and shape_ok) or _is_encoded(ds))):
            raise VideoError(
                f"{path}: dataset {name} cannot be read as images "
                f"({_describe(ds) if _is_dataset(ds) else 'a group'}; expected uint8 (T, H, W[, 1|3|4]) "
                "or JPEG/PNG bytes (T, N))"
            )
        found.images.append((ds.name, name, ds.parent.name.strip("/")))


def _fps(f: Any, options: OpenOptions) -> float:
    if options.fps > 0:
        return options.fps
    try:  # robomimic: data.attrs["env_args"] = {"env_kwargs": {"control_freq": 20, ...}, ...}
        return float(json.loads(f["data"].attrs["env_args"])["env_kwargs"]["control_freq"])
    except (KeyError, TypeError, ValueError):
        return 0.0


def _listing(f: Any, limit: int = 20) -> str:
    names = [_describe(ds) for ds in _datasets(f)]
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return (", ".join(names[:limit]) + more) if names else "none"


# ================================================================================= discovery
def _claims(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in H5_EXTENSIONS


def _first_frame(ds: Any, encoded: bool) -> np.ndarray | None:
    item = np.asarray(ds[0])
    if encoded:
        return _decode_bytes(item)  # for its size
    return item


def _open(path: Path, name: str, options: OpenOptions) -> Opened:
    try:
        import h5py
    except ImportError:
        raise VideoError(f"{path}: reading HDF5 needs the h5py package: pip install h5py") from None
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise VideoError(f"{path}: not a readable HDF5 file ({e})") from None
    try:  # read the layout and close: nothing may stay open across a DataLoader fork
        if isinstance(f.get("data"), h5py.Group) and any(k.startswith("demo") for k in f["data"]):
            layout, found = "robomimic", _robomimic(f)
        elif isinstance(f.get("observations/images"), h5py.Group):
            layout, found = "aloha", _aloha(f)
        else:
            layout, found = "generic", _generic(f)
        _named(f, path, options.cameras, found)
        if not found.images:
            raise VideoError(
                f"{path}: no image datasets (uint8 (T, H, W, 3), robomimic data/demo_N/obs/*_image, or ALOHA "
                f"observations/images/<camera>); its datasets: {_listing(f)}. Name one with --camera PATH"
            )
        fps = _fps(f, options)
        sources: list[VideoSource] = []
        for dataset, camera, episode in found.images:
            if options.cameras and camera not in options.cameras:
                continue
            ds = f[dataset]
            encoded = _is_encoded(ds)
            first = _first_frame(ds, encoded)
            if first is None:
                raise VideoError(f"{path}: {dataset}: its first image does not decode (not JPEG/PNG bytes?)")
            label = f"{episode}/{camera}" if episode and layout != "generic" else dataset.lstrip("/")
            sources.append(Hdf5Source(
                str(path), f"{name}:{label}", options.max_side, dataset=dataset, camera=camera,
                episode=episode or name, frames=int(ds.shape[0]), size=(first.shape[1], first.shape[0]),
                fps=fps, encoded=encoded, rgb_imencoded=encoded and layout == "aloha" and dataset.startswith("/observations/images/"),
            ))
        _attach_targets(f, path, layout, sources)
    finally:
        f.close()
    cameras = list(dict.fromkeys(camera for _, camera, _ in found.images))
    return Opened(sources, [f"{name}:{line}" for line in found.skipped], cameras, detail=layout)


# ================================================================================== targets
class Hdf5Targets(Targets):
    """One episode's numeric datasets (``actions``, ``obs/robot0_eef_pos``, ``observations/qpos``),
    named by their path under the episode's group (robomimic: ``data/demo_N``; ALOHA: the file);
    row ``i`` belongs to frame ``i`` (HDF5 episodes store one row per step)."""

    def __init__(self, path: str, group: str, names: list[str]):
        self.path, self.group, self._names = path, group, names
        self.file = path

    def names(self) -> list[str]:
        return list(self._names)

    def read(self, name: str) -> np.ndarray:
        if name not in self._names:
            raise KeyError(name)
        full = f"{self.group.rstrip('/')}/{name}"
        try:
            values = _OPEN.get(self.path, _OpenFile).file[full][()]
        except (OSError, KeyError, ValueError) as e:
            raise VideoError(f"{self.path}: {full} cannot be read ({e})") from None
        return as_rows(values)


def _target_names(group: Any) -> list[str]:
    """Numeric per-step datasets under ``group`` (1-D or 2-D; images, depth maps and encoded
    frames are frames, not targets; ALOHA's ``compress_len`` is bookkeeping)."""
    import h5py

    names: list[str] = []

    def visit(name: str, obj: Any) -> None:
        if (isinstance(obj, h5py.Dataset) and obj.ndim in (1, 2) and obj.dtype.kind in "fiub"
                and not _is_encoded(obj) and obj.shape[0] > 0 and not name.endswith("compress_len")):
            names.append(name)

    group.visititems(visit)
    return sorted(names, key=natural_key)


def _attach_targets(f: Any, path: Path, layout: str, sources: list[VideoSource]) -> None:
    groups: dict[str, list[str]] = {}
    for src in sources:
        assert isinstance(src, Hdf5Source)
        group = f"data/{src.episode}" if layout == "robomimic" else "/" if layout == "aloha" else f[src.dataset].parent.name
        if group not in groups:
            groups[group] = _target_names(f[group])
        if groups[group]:
            src.targets = Hdf5Targets(str(path), group, groups[group])


FORMAT = Format("hdf5", "an HDF5 episode file (.hdf5, .h5)", _claims, _open)
