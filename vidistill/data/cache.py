"""``vidistill extract``: decode every frame once into a JPEG cache that training reads directly.

Why: a random clip from a video costs a seek (decoding from the previous keyframe, up to a whole
GOP) plus decoding every frame between the clip's K frames; from the cache it costs K JPEG
decodes (``benchmarks/bench_data.py`` measures both).

Layout of a cache directory::

    index.json                 format, version, max_side, quality, one entry per source
    <key>/000000.jpg ...       frame i of a source is <key>/{i:06d}.jpg (the entry's pattern)

``<key>`` is the source's name made filesystem-safe plus a hash of its path, so a rerun with more
videos maps every source to the same directory. Frame ``i`` of the cache is frame ``i`` of the
source (a frame that failed to decode is filled with the nearest good one, as in training).

Resumable: every JPEG is written to a temporary name and renamed, so a file under its final
name is complete; a rerun keeps frames that exist and look like whole JPEGs (start and end
markers), re-extracts the rest, and the index marks a source complete only once all its frames
are on disk. Sources whose recorded size or frame count changed are extracted again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import cv2

from vidistill.data.sources import (
    CACHE_FORMAT,
    CACHE_INDEX,
    CACHE_VERSION,
    CacheEntry,
    JpegCacheSource,
    VideoSource,
    discover_sources,
    is_cache_dir,
    read_cache_index,
)
from vidistill.data.workers import exit_with_parent, usable_cores, worker_context
from vidistill.errors import VideoError

log = logging.getLogger(__name__)

CHUNK_FRAMES = 256  # frames per task: small enough for a smooth progress bar and load balance
FRAME_FILE = "{:06d}.jpg"


def cache_key(source: VideoSource) -> str:
    """Directory name of a source in the cache: readable name + hash of where it came from."""
    origin = source.original_path if isinstance(source, JpegCacheSource) else source.path
    digest = hashlib.sha1(f"{os.path.realpath(origin)}#{source.name}".encode()).hexdigest()[:10]
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", source.name.replace("/", "__")).strip("._")[:80]
    return f"{safe or 'source'}-{digest}"


def is_whole_jpeg(path: str | os.PathLike) -> bool:
    """Cheap validation: a JPEG starts with FFD8 and ends with FFD9 (a cut-off file does not)."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(-2, os.SEEK_END)
            tail = f.read(2)
    except OSError:
        return False
    return head == b"\xff\xd8" and tail == b"\xff\xd9"


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _write_index(out: Path, entries: Sequence[CacheEntry], max_side: int, quality: int) -> None:
    index = {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "max_side": max_side,
        "quality": quality,
        "sources": [e.to_dict() for e in entries],
    }
    write_atomic(out / CACHE_INDEX, (json.dumps(index, indent=1) + "\n").encode())


# ------------------------------------------------------------------------------ worker side
_WORKER_SOURCES: list[VideoSource] = []


def _init_worker(sources: list[VideoSource], parent_pid: int | None = None) -> None:
    global _WORKER_SOURCES
    if parent_pid is not None:
        exit_with_parent(parent_pid)
    _WORKER_SOURCES = sources
    cv2.setNumThreads(1)  # the pool is the parallelism


def _extract_chunk(source_idx: int, frame_dir: str, start: int, stop: int, quality: int) -> tuple[int, int, int, str]:
    """Write frames [start, stop) of a source that are not already on disk.

    Returns (source index, frames written, frames kept, error message or "")."""
    source = _WORKER_SOURCES[source_idx]
    folder = Path(frame_dir)
    missing = [i for i in range(start, stop) if not is_whole_jpeg(folder / FRAME_FILE.format(i))]
    params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    try:
        for i in missing:  # increasing: the source decodes sequentially, no seeks
            ok, buf = cv2.imencode(".jpg", source.read_bgr(i), params)
            if not ok:
                raise VideoError(f"{source.path}: frame {i} could not be encoded as JPEG")
            write_atomic(folder / FRAME_FILE.format(i), buf.tobytes())
    except VideoError as e:
        source.close()
        return source_idx, 0, 0, str(e)
    # The source stays open: the next chunk of it (often in this same process) continues the
    # sequential decode where this one stopped, without a seek.
    return source_idx, len(missing), (stop - start) - len(missing), ""


# ------------------------------------------------------------------------------- main side
def extract_cache(
    videos: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    max_side: int = 0,
    quality: int = 95,
    workers: int | None = None,
    progress: bool = True,
    cameras: Sequence[str] = (),
    fps: float = 0.0,
) -> list[CacheEntry]:
    """Extract every frame of every source under ``videos`` into the cache ``output``.

    Returns the index entries. Raises ``VideoError`` for unusable input, for an ``output`` that
    is something else, or (after extracting all the others) when some sources failed.
    """
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise VideoError(f"{out}: exists and is not a directory")
    if out.is_dir() and not is_cache_dir(out) and any(out.iterdir()):
        raise VideoError(f"{out}: not empty and not a frame cache (no {CACHE_INDEX}); choose another --output")
    sources = discover_sources(videos, max_side=max_side, exclude=[out], cameras=cameras, fps=fps)
    for src in sources:
        src.close()

    previous: dict[str, CacheEntry] = {}
    if is_cache_dir(out):
        index = read_cache_index(out)
        if int(index.get("max_side", 0)) != max_side or int(index.get("quality", 0)) != quality:
            raise VideoError(
                f"{out}: this cache was written with --max-side {index.get('max_side')} --quality "
                f"{index.get('quality')}; resume with the same values or choose another --output"
            )
        previous = {e.pattern: e for e in index["sources"]}
    out.mkdir(parents=True, exist_ok=True)
    for tmp in out.glob("*/*.tmp"):  # leftovers of an interrupted run
        tmp.unlink(missing_ok=True)

    entries: list[CacheEntry] = []
    for src in sources:
        key = cache_key(src)
        w, h = src.size
        entry = CacheEntry(
            name=src.name, path=src.original_path if isinstance(src, JpegCacheSource) else src.path,
            frames=len(src), fps=src.fps, width=w, height=h, pattern=f"{key}/{FRAME_FILE}",
            camera=src.camera, episode=src.episode,
        )
        old = previous.pop(entry.pattern, None)
        if old is not None and (old.frames, old.width, old.height) != (entry.frames, entry.width, entry.height):
            log.warning("%s: changed since it was cached (%d frames %dx%d, now %d frames %dx%d); extracting it again",
                        src.path, old.frames, old.width, old.height, entry.frames, w, h)
            shutil.rmtree(out / key, ignore_errors=True)
        elif old is not None:
            entry.complete = old.complete
        (out / key).mkdir(exist_ok=True)
        entries.append(entry)
    kept = list(previous.values())
    if kept:
        log.info("%s: also keeps %d source(s) cached by earlier runs", out, len(kept))
    _write_index(out, entries + kept, max_side, quality)

    todo = [i for i, e in enumerate(entries) if not e.complete]
    tasks = [
        (i, str(out / Path(entries[i].pattern).parent), s, min(s + CHUNK_FRAMES, entries[i].frames), quality)
        for i in todo for s in range(0, entries[i].frames, CHUNK_FRAMES)
    ]
    done_in_source = {i: 0 for i in todo}
    chunks_in_source = {i: 0 for i in todo}
    for t in tasks:
        chunks_in_source[t[0]] += 1
    failures: dict[int, str] = {}
    written = kept_frames = 0
    total = sum(entries[i].frames for i in todo)
    if len(entries) > len(todo):
        log.info("%s: %d of %d sources already complete", out, len(entries) - len(todo), len(entries))

    from tqdm import tqdm

    bar = tqdm(total=total, unit="frame", desc="extract", disable=not progress or not tasks, dynamic_ncols=True)

    def finish(result: tuple[int, int, int, str], task: tuple[Any, ...]) -> None:
        nonlocal written, kept_frames
        i, n_written, n_kept, error = result
        bar.update(task[3] - task[2])
        written += n_written
        kept_frames += n_kept
        if error:
            failures.setdefault(i, error)
        done_in_source[i] += 1
        if done_in_source[i] == chunks_in_source[i] and i not in failures:
            entries[i].complete = True
            _write_index(out, entries + kept, max_side, quality)

    workers = max(1, min(workers or min(usable_cores(), 8), len(tasks) or 1))
    try:
        if workers == 1:
            _init_worker(sources)
            for task in tasks:
                finish(_extract_chunk(*task), task)
        else:
            with ProcessPoolExecutor(workers, mp_context=worker_context(), initializer=_init_worker,
                                     initargs=(sources, os.getpid())) as pool:
                pending: dict[Future, tuple[Any, ...]] = {}
                queue = list(reversed(tasks))
                while queue or pending:
                    # Bounded submission: results arrive in source order, so sources complete
                    # (and are marked complete in the index) one after another.
                    while queue and len(pending) < 2 * workers:
                        task = queue.pop()
                        pending[pool.submit(_extract_chunk, *task)] = task
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        finish(fut.result(), pending.pop(fut))
    finally:
        bar.close()
        for src in sources:
            src.close()
    log.info("%s: %d frames written, %d already there, %d sources", out, written, kept_frames, len(entries))
    if failures:
        lines = "; ".join(failures.values())
        raise VideoError(f"{len(failures)} source(s) could not be extracted (the others are in {out}): {lines}")
    return entries + kept
