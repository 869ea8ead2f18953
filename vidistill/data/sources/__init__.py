"""Where frames come from: one module per input format behind the one :class:`VideoSource` contract.

Modules: :mod:`.base` (the contract and the damage policy), :mod:`.video_file` (mp4/mkv/...,
PyAV), :mod:`.frame_folder` (a folder of images), :mod:`.jpeg_cache` (what ``vidistill extract``
writes), :mod:`.lerobot` (LeRobot v2.x / v3.0 datasets; image features via
:mod:`.parquet_images`), :mod:`.rosbag` (ROS 1/2 bags), :mod:`.hdf5` (HDF5 episodes),
:mod:`.handles` (per-process LRU of open files), :mod:`.discovery` (which format a path holds).
Adding a format = one new module that defines ``FORMAT = Format(...)`` + one line in
``discovery.FORMATS``.

The contract (docs/METHOD.md "Data: clips")
-------------------------------------------
A source is ONE episode x ONE camera: a clip never spans two sources, so it never crosses an
episode boundary or mixes cameras. A source provides, without decoding the whole recording:

* ``name`` (unique display name), ``path`` (the file or folder it reads), ``kind`` (its format);
* ``camera`` and ``episode``: the log's own names (``observation.images.top``, ``"12"``); ``""``
  where a format has none (a loose video file);
* ``len(source)`` frames (what really decodes, not what a container header claims), ``fps``
  (0.0 when the format stores none), ``size`` (width, height after ``max_side``), ``native_size``;
* ``read(i)``: exact random access: frame ``i`` as RGB ``uint8`` (H, W, 3) at ``size``, the very
  frame a sequential decode gives at position ``i``; ``read_many(indices)`` (increasing is cheapest).
  A format implements ``_decode(i)`` (native size, in its ``channel_order`` "rgb" or "bgr", or
  None when that frame cannot be decoded); resizing, colour order and the damage policy are
  shared (``base.VideoSource``); ``read_bgr(i)`` is the same frame in BGR (for ``cv2.imencode``);
* ``close()``: release open decoders/files; reading again reopens them;
* ``describe()``: a dict of the metadata above (``vidistill info`` prints it; formats add e.g. codec).

Opening lazily, per process. ``__init__`` reads metadata only and leaves nothing open (or closes
what it opened to probe). Decoders and file handles are opened on first read, remembered with
the pid that opened them, and dropped when pickled (``_process_local``): a DataLoader worker
(spawned: :mod:`vidistill.data.workers`) therefore opens its own, and never shares a file offset with its parent. No
file handle may be open across a fork; ``build_dataset`` calls ``close()`` on every source before
workers start.

Errors. Every problem with the input is a :class:`~vidistill.errors.VideoError` whose message
names the file and what is wrong (the CLI prints it, no traceback, exit code != 0):

* a missing path, an empty folder, a file that is not a video, a zero-byte or unreadable
  container, broken log metadata: at discovery time;
* a recording whose container claims more frames than decode (truncated): the real number of
  decodable frames is used, with one warning saying how many frames were lost;
* a frame that fails to decode at read time (corrupt packet, unreadable image file): replaced by
  the nearest good frame of the same source (earlier first), with one warning per source. A clip
  with one repeated frame costs a little signal; killing a 100-epoch run costs far more. If no
  good frame is near, ``read`` raises ``VideoError`` and the dataset moves to another clip;
* frames of different sizes in one frame folder: ``VideoError`` naming the folder and both sizes
  (two sizes in one folder nearly always means two recordings were mixed; resizing would hide it).

A path named explicitly that fails is an error; a bad file found while walking a tree is skipped
with a warning (one broken episode must not stop training on a thousand good ones).
"""

from __future__ import annotations

from vidistill.data.sources.base import (
    MAX_SUBSTITUTE_DISTANCE,
    Format,
    Opened,
    OpenOptions,
    VideoSource,
    fit,
    natural_key,
    scaled_size,
)
from vidistill.data.sources.discovery import FORMATS, Discovery, detect_format, discover, discover_sources
from vidistill.data.sources.frame_folder import IMAGE_EXTENSIONS, FrameFolderSource, ImageSequenceSource
from vidistill.data.sources.jpeg_cache import (
    CACHE_FORMAT,
    CACHE_INDEX,
    CACHE_VERSION,
    CacheEntry,
    JpegCacheSource,
    is_cache_dir,
    open_cache,
    read_cache_index,
)
from vidistill.data.sources.video_file import VIDEO_EXTENSIONS, VideoFileSource

__all__ = [
    "CACHE_FORMAT", "CACHE_INDEX", "CACHE_VERSION", "FORMATS", "IMAGE_EXTENSIONS", "MAX_SUBSTITUTE_DISTANCE",
    "VIDEO_EXTENSIONS", "CacheEntry", "Discovery", "Format", "FrameFolderSource", "ImageSequenceSource",
    "JpegCacheSource", "OpenOptions", "Opened", "VideoFileSource", "VideoSource", "detect_format", "discover",
    "discover_sources", "fit", "is_cache_dir", "natural_key", "open_cache", "read_cache_index", "scaled_size",
]
