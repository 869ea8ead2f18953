"""Video data: sources, clips, views, batches, and the JPEG frame cache. Knows nothing of models.

Names are imported lazily so that ``import vidistill.data.command`` (the CLI) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "VideoSource": "sources",
    "VideoFileSource": "sources",
    "FrameFolderSource": "sources",
    "JpegCacheSource": "sources",
    "discover_sources": "sources",
    "discover": "sources",
    "ClipIndex": "clips",
    "ClipSampler": "clips",
    "select_usable": "clips",
    "ClipViews": "views",
    "FrameViews": "views",
    "ClipSample": "views",
    "build_views": "views",
    "clip_frames": "views",
    "ClipBatch": "dataset",
    "ClipDataset": "dataset",
    "collate_clips": "dataset",
    "build_dataset": "dataset",
    "build_dataloader": "dataset",
    "extract_cache": "cache",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"vidistill.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'vidistill.data' has no attribute {name!r}")
