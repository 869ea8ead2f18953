"""``vidistill info PATH``: what discovery finds before anyone trains: format, episodes, cameras,
frames, fps, resolution, codec, and what was skipped and why.

Importing this module is cheap (argparse only); discovery loads in ``run``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from vidistill.data.command import fps_value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", nargs="+", metavar="PATH",
                        help="video file, frame folder, episode tree, LeRobot dataset or JPEG cache")
    parser.add_argument("--camera", action="append", default=[], metavar="NAME",
                        help="only this robot-log camera, by the log's name (repeatable; default: every RGB camera)")
    parser.add_argument("--fps", type=fps_value, default=0.0, metavar="FPS",
                        help="frame rate of logs that store none (HDF5)")


def _values(items: Sequence[Any]) -> str:
    """Distinct values, in order: "30" or "30, 15"."""
    seen: list[Any] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return ", ".join(str(v) for v in seen)


def summary(path: str, cameras: Sequence[str] = (), fps: float = 0.0) -> str:
    """The report for one input path (what ``vidistill info`` prints)."""
    from vidistill.data.sources import OpenOptions, discover

    found = discover([path], OpenOptions(cameras=tuple(cameras), fps=fps))
    sources = found.sources
    episodes = {s.episode for s in sources if s.episode}
    lines = [f"{path}: {found.formats.get(path, '?')}",
             f"  sources: {len(sources)} (one per episode x camera), frames: {sum(len(s) for s in sources)}"
             + (f", episodes: {len(episodes)}" if episodes else "")]
    by_camera: dict[str, list[Any]] = {}
    for src in sources:
        by_camera.setdefault(src.camera, []).append(src)
    header = f"  {'camera':32s} {'sources':>7s} {'frames':>8s} {'fps':>6s} {'resolution':>11s}  codec"
    lines.append(header)
    for camera, group in by_camera.items():
        info = [s.describe() for s in group]
        fps = _values([f"{d['fps']:g}" if d["fps"] else "?" for d in info])  # 0: the log records none
        resolution = _values([f"{d['width']}x{d['height']}" for d in info])
        codec = _values([d.get("codec", d["kind"]) for d in info])
        lines.append(f"  {camera or '(no camera names)':32s} {len(group):7d} {sum(len(s) for s in group):8d} "
                     f"{fps:>6s} {resolution:>11s}  {codec}")
    if any(not s.fps for s in sources):
        lines.append("  fps ?: the log records no frame rate (strides count frames; --fps sets one)")
    targets = next((s.targets.names() for s in sources if s.targets is not None), [])
    if targets:  # what `vidistill eval actions --target` can read
        lines.append(f"  recorded beside the frames: {', '.join(targets)}")
    if found.skipped:
        lines.append("  skipped:")
        lines += [f"    {line}" for line in found.skipped]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    for path in args.path:
        sys.stdout.write(summary(path, args.camera, args.fps) + "\n")
    return 0
