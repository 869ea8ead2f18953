"""``vidistill extract``: pre-extract video frames to a JPEG cache (see ``vidistill.data.cache``).

Importing this module is cheap (argparse only); OpenCV and the extraction code load in ``run``.
"""

from __future__ import annotations

import argparse

from vidistill.data.workers import usable_cores


def _quality(text: str) -> int:
    q = int(text)
    if not 1 <= q <= 100:
        raise argparse.ArgumentTypeError(f"JPEG quality must be in 1..100, got {q}")
    return q


def _non_negative(text: str) -> int:
    n = int(text)
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {n}")
    return n


def fps_value(text: str) -> float:
    """argparse type of ``--fps`` (extract and info): a frame rate >= 0 (0 = unknown)."""
    fps = float(text)
    if not fps >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return fps


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--video", action="extend", nargs="+", required=True, metavar="PATH",
        help="video file, frame folder, LeRobot dataset, or a tree of them (one source per video, "
        "frame folder, episode x camera); repeatable",
    )
    parser.add_argument(
        "--camera", action="append", default=[], metavar="NAME",
        help="only this robot-log camera, by the log's name (repeatable; default: every RGB camera)",
    )
    parser.add_argument("--output", required=True, metavar="CACHE", help="cache directory (created; resumable)")
    parser.add_argument(
        "--max-side", type=_non_negative, default=0, metavar="N",
        help="downscale frames so the longer side is at most N px (0 = native). Keep frames several "
        "times larger than the training crops when the pre-crop is on (it takes 5-20%% of the area)",
    )
    parser.add_argument("--quality", type=_quality, default=95, metavar="Q", help="JPEG quality 1-100 (default 95)")
    parser.add_argument(
        "--workers", type=int, default=min(usable_cores(), 8), metavar="N",
        help="parallel decoder processes (default: the cores this process may use, at most 8)",
    )
    parser.add_argument("--fps", type=fps_value, default=0.0, metavar="FPS",
                        help="frame rate of logs that store none (HDF5), kept in the cache index")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from vidistill.data.cache import extract_cache

    entries = extract_cache(
        args.video, args.output, max_side=args.max_side, quality=args.quality,
        workers=max(1, args.workers), progress=not args.no_progress, cameras=args.camera,
        fps=args.fps,
    )
    import logging

    frames = sum(e.frames for e in entries)
    logging.getLogger(__name__).info(
        "cache %s: %d sources, %d frames; train with --video %s", args.output, len(entries), frames, args.output
    )
    return 0
