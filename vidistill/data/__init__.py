"""Video data: sources, clips, views, batches, and the JPEG frame cache. Knows nothing of models.

Names are imported lazily so that ``import vidistill.data.command`` (the CLI) stays cheap.
"""

from __future__ import annotations

from vidistill.lazy_exports import lazy_exports

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
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
