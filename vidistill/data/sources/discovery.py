"""Discovery: which format a path holds, and every source under a list of paths.

:data:`FORMATS` is the registry: adding a format is one module that defines a :class:`Format`
and one line here. Discovery asks each format in order whether it claims a path; a claimed
folder is one log and is not looked into (except frame folders, which can hold more sources in
sub-folders); an unclaimed folder is walked.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from vidistill.data.sources import frame_folder, hdf5, jpeg_cache, lerobot, rosbag, video_file
from vidistill.data.sources.base import Format, Opened, OpenOptions, VideoSource, natural_key
from vidistill.errors import VideoError

log = logging.getLogger(__name__)


# The registry. Order matters: the first format that claims a path owns it.
FORMATS: list[Format] = [
    jpeg_cache.FORMAT,
    lerobot.FORMAT,
    frame_folder.FORMAT,
    video_file.FORMAT,
    rosbag.FORMAT,
    hdf5.FORMAT,
]


def detect_format(path: Path) -> Format | None:
    """The format that owns ``path`` (a file or folder), or None."""
    for fmt in FORMATS:
        if fmt.claims(path):
            return fmt
    return None


def _walk(root: Path, exclude: set[Path]) -> Iterable[tuple[Format, Path]]:
    """(format, path) for every source under ``root``, in natural order."""
    if root.resolve() in exclude:
        return
    fmt = detect_format(root)
    if fmt is not None:
        yield fmt, root
        if not fmt.nested:
            return
    entries = sorted((p for p in root.iterdir() if not p.name.startswith(".")), key=lambda p: natural_key(p.name))
    for p in entries:
        if p.is_file() and (fmt := detect_format(p)) is not None:
            yield fmt, p
    for p in entries:
        if p.is_dir():
            yield from _walk(p, exclude)


@dataclass
class Discovery:
    """Every source found, and what was skipped on purpose (with why)."""

    sources: list[VideoSource]
    skipped: list[str]
    formats: dict[str, str]  # input path -> the formats found there ("lerobot", "video+frames")


def discover(
    paths: Sequence[str | os.PathLike], options: OpenOptions = OpenOptions(),
    exclude: Sequence[str | os.PathLike] = (),
) -> Discovery:
    """All sources under ``paths``, in a deterministic (natural) order; see :func:`discover_sources`."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise VideoError("no video given (pass --video PATH, or set data.videos)")
    excluded = {Path(p).resolve() for p in exclude}
    # format, path, display name, named explicitly (vs found by walking a tree), input index
    found: list[tuple[Format, Path, str, bool, int]] = []
    for n, raw in enumerate(paths):
        path = Path(raw).expanduser()
        if not path.exists():
            raise VideoError(f"{raw}: no such file or directory")
        if path.is_file():
            fmt = detect_format(path)
            if fmt is None:
                raise VideoError(f"{raw}: not a video file (expected {_accepted()})")
            found.append((fmt, path, path.name, True, n))
            continue
        before = len(found)
        for fmt, p in _walk(path, excluded):
            rel = p.relative_to(path).as_posix()
            name = path.name if rel == "." else f"{path.name}/{rel}"
            found.append((fmt, p, name, p == path, n))
        if len(found) == before:
            raise VideoError(f"{raw}: no video files or logs found (expected {_accepted()})")

    def build(item: tuple[Format, Path, str, bool, int]) -> Opened:
        fmt, p, name, explicit, _ = item
        try:
            return fmt.open(p, name, options)
        except VideoError as e:
            if explicit:
                raise
            # Found while walking a log: one broken episode (a recording cut off by a power loss
            # is common on robots) must not stop training on the thousand good ones.
            log.warning("skipping %s", e)
            return Opened([], [str(e)])

    # Probing runs in threads (decoders release the GIL): it matters for logs of many episodes.
    workers = min(8, len(found))
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            built = list(pool.map(build, found))  # re-raises the first failure, in path order
    else:
        built = [build(item) for item in found]

    formats: dict[str, list[str]] = {}
    for (fmt, *_, n), opened in zip(found, built, strict=True):
        if opened.sources:
            kinds = formats.setdefault(str(paths[n]), [])
            label = f"{fmt.name} {opened.detail}".strip()
            if label not in kinds:
                kinds.append(label)
    everything = [src for opened in built for src in opened.sources]
    skipped = [line for opened in built for line in opened.skipped]
    have = sorted({c for opened in built for c in opened.cameras} | {s.camera for s in everything if s.camera})
    _check_cameras(options.cameras, have, paths)
    if not everything:
        raise VideoError(f"no usable video or log in {', '.join(str(p) for p in paths)} (see warnings above)")
    chosen = [s for s in everything if not options.cameras or s.camera in options.cameras]
    return Discovery(_unique(chosen), skipped, {k: "+".join(v) for k, v in formats.items()})


def _check_cameras(cameras: Sequence[str], have: list[str], paths: Sequence) -> None:
    missing = [c for c in cameras if c not in have]
    if missing:
        raise VideoError(
            f"{', '.join(str(p) for p in paths)}: no camera named {', '.join(missing)}; "
            f"cameras found: {', '.join(have) if have else 'none (plain videos and frame folders have no camera names)'}"
        )


def _unique(sources: list[VideoSource]) -> list[VideoSource]:
    """The same source given twice counts once; equal display names get a #2, #3 suffix."""
    out: list[VideoSource] = []
    seen_keys: set[str] = set()
    seen_names: dict[str, int] = {}
    for src in sources:
        key = f"{os.path.realpath(src.path)}#{src.camera}#{src.episode}" + (f"#{src.name}" if src.kind == "cache" else "")
        if key in seen_keys:
            log.warning("%s: given twice; using it once", src.path)
            continue
        seen_keys.add(key)
        count = seen_names.get(src.name, 0)
        seen_names[src.name] = count + 1
        if count:
            src.name = f"{src.name}#{count + 1}"
        out.append(src)
    return out


def _accepted() -> str:
    return ", ".join(f.what for f in FORMATS)


def discover_sources(
    paths: Sequence[str | os.PathLike], max_side: int = 0, exclude: Sequence[str | os.PathLike] = (),
    cameras: Sequence[str] = (), fps: float = 0.0,
) -> list[VideoSource]:
    """All sources under ``paths``, in a deterministic (natural) order.

    A path may be a file or folder of any format in :data:`FORMATS`, or a tree holding them
    (each video file, frame folder and log found is opened). ``exclude``: dirs to ignore
    (``extract`` excludes its own output when it lies inside an input). ``cameras``: keep only
    these cameras (the log's names); one that no source has is an error listing those there are.
    Raises ``VideoError`` naming the path for anything unusable that was named explicitly; a bad
    file found while walking a tree is skipped with a warning (an error only if nothing is left).
    """
    found = discover(paths, OpenOptions(max_side=max_side, cameras=tuple(cameras), fps=fps), exclude)
    for line in found.skipped:
        log.info("skipped %s", line)
    return found.sources
