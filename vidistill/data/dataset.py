"""Clips -> views -> batches: the dataset, the batch type and the DataLoader the trainer uses."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vidistill.config import Config
from vidistill.data.clips import ClipIndex, ClipSampler, select_usable
from vidistill.data.device_views import RawClip, collate_raw_clips, raw_clip
from vidistill.data.sources import VideoSource, discover_sources
from vidistill.data.views import ClipSample, ClipViews, FrameViews, build_views, clip_frames
from vidistill.data.workers import exit_with_parent, loader_workers, worker_context
from vidistill.errors import VideoError

log = logging.getLogger(__name__)

# A clip whose frames cannot be read (the damage policy: vidistill/data/sources/__init__.py) is replaced by the next clip id;
# after this many consecutive failures the data is broken beyond glitches and we stop.
MAX_CLIP_RETRIES = 16


@dataclass
class ClipBatch:
    """A batch of views, uint8 RGB (the trainer normalises them on the device: ``views.Normalise``).

    * ``globals``: (B, G, 3, H, W). Method: G = K frames of the clip, shared geometry.
      DINO baselines: G = 2 global views of one frame (time-aug: of two frames Δ apart).
    * ``locals``: (B, Gl, L, 3, h, w). Method: Gl = K−1, the L local crops of frames 1..K−1.
      DINO baselines: Gl = 1, the L local crops of the image.
    * ``clip_ids``: (B,) int64, which clips these are (logging / debugging).
    """

    globals: torch.Tensor
    locals: torch.Tensor
    clip_ids: torch.Tensor

    def __len__(self) -> int:
        return self.globals.shape[0]

    def pin_memory(self) -> ClipBatch:
        # Called by the DataLoader's pin-memory thread for custom batch types.
        return ClipBatch(self.globals.pin_memory(), self.locals.pin_memory(), self.clip_ids.pin_memory())


class FrameMemo:
    """The last ``capacity`` decoded frames of this process, keyed by (source, frame): what lets
    the clips of a chain (``data.chain_length``) share the K−1 frames they have in common.
    Frames are stored read-only, so a view that tried to write into a shared frame would fail
    loudly instead of changing a later clip. Process-local: it is never pickled with its frames."""

    def __init__(self, capacity: int = 0):
        self.capacity = int(capacity)
        self.hits = self.misses = 0
        self._frames: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()

    def __getstate__(self) -> dict:
        return {"capacity": self.capacity}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["capacity"])

    def read(self, source: VideoSource, key: int, frame_ids: Sequence[int]) -> list[np.ndarray]:
        """``source.read_many(frame_ids)``, decoding only the frames not held."""
        if not self.capacity:
            return source.read_many(frame_ids)
        missing = [i for i in frame_ids if (key, i) not in self._frames]
        self.hits += len(frame_ids) - len(missing)
        self.misses += len(missing)
        for i, frame in zip(missing, source.read_many(missing), strict=True):
            frame.setflags(write=False)
            self._frames[(key, i)] = frame
        out = []
        for i in frame_ids:
            self._frames.move_to_end((key, i))
            out.append(self._frames[(key, i)])
        while len(self._frames) > self.capacity:
            self._frames.popitem(last=False)
        return out


class ClipDataset(Dataset):
    """Map-style dataset of clips; an index is a clip id or ``(clip_id, epoch)`` (ClipSampler's).

    The views of a clip are drawn from ``numpy.random.default_rng((seed, epoch, clip_id))``, so
    they do not depend on worker count, worker order, or on a resume in the middle of an epoch.
    With ``views_on_device`` an item is a :class:`RawClip` (the frames' region and the same
    draws) that the trainer renders on its device.
    """

    def __init__(self, sources: Sequence[VideoSource], index: ClipIndex, views: ClipViews | FrameViews, seed: int = 0,
                 views_on_device: bool = False):
        if len(sources) != len(index.lengths):
            raise ValueError("index and sources disagree")
        self.sources = list(sources)
        self.index = index
        self.views = views
        self.seed = int(seed)
        self.views_on_device = views_on_device
        self.memo = FrameMemo()  # sized by build_dataloader when clips come in chains
        self._warned: set[int] = set()

    def __len__(self) -> int:
        return len(self.index)

    def frames(self, clip_id: int) -> list[np.ndarray]:
        """The decoded RGB frames of a clip (no augmentation)."""
        source, frame_ids = self.index.frames(clip_id)
        return self.memo.read(self.sources[source], source, frame_ids)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[ClipSample | RawClip, int]:
        clip_id, epoch = (item, 0) if isinstance(item, (int, np.integer)) else item
        clip_id, epoch = int(clip_id), int(epoch)
        for attempt in range(MAX_CLIP_RETRIES):
            cid = (clip_id + attempt) % len(self.index)
            try:
                frames = self.frames(cid)
            except VideoError as e:
                source = self.index.locate(cid)[0]
                if source not in self._warned:
                    self._warned.add(source)
                    log.warning("skipping a clip: %s", e)
                continue
            rng = np.random.default_rng((self.seed, epoch, cid))
            if self.views_on_device:
                return raw_clip(self.views, frames, rng), cid
            with _one_torch_thread():
                return self.views(frames, rng), cid
        raise VideoError(f"{MAX_CLIP_RETRIES} consecutive clips from clip {clip_id} cannot be read; giving up")


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Views are many small tensor ops: intra-op threads only add synchronisation (measured 17 ms
    vs 100+ ms per clip with 2 threads on a busy 2-core machine). DataLoader workers already run
    one thread; with ``num_workers=0`` the views run in the training process, so the thread count
    is lowered for the duration of one clip and restored (the training step runs unchanged)."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def collate_clips(samples: Sequence[tuple[ClipSample, int]]) -> ClipBatch:
    return ClipBatch(
        globals=torch.stack([s.globals for s, _ in samples]),
        locals=torch.stack([s.locals for s, _ in samples]),
        clip_ids=torch.tensor([cid for _, cid in samples], dtype=torch.int64),
    )


def _worker_init(parent_pid: int, _: int) -> None:
    exit_with_parent(parent_pid)
    # Each worker is one unit of parallelism: no extra OpenCV/torch threads fighting over cores.
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def build_dataset(cfg: Config, sources: Sequence[VideoSource] | None = None) -> ClipDataset:
    """Discover the sources of ``cfg.data.videos``, drop those too short, and build the dataset."""
    d = cfg.data
    if sources is None:
        sources = discover_sources(d.videos, max_side=d.max_side, cameras=d.cameras, fps=d.fps)
    k, stride = clip_frames(cfg)
    usable = select_usable(sources, k, stride)
    index = ClipIndex([len(s) for s in usable], k, stride, d.clip_stride)
    for src in usable:  # nothing open in the training process; workers open their own decoders
        src.close()
    return ClipDataset(usable, index, build_views(cfg), seed=cfg.train.seed,
                       views_on_device=d.views_on == "device")


def build_dataloader(cfg: Config, rank: int = 0, world_size: int = 1) -> tuple[DataLoader, ClipSampler]:
    """The training DataLoader over ``cfg.data.videos`` and its sampler.

    Per epoch: ``sampler.set_epoch(e)`` then (resume) ``sampler.set_start(batches_done * batch)``.
    ``len(loader)`` is the number of full batches left in the epoch (``drop_last``). Batches are
    :class:`ClipBatch` (``data.views_on: device``: ``RawClipBatch``); memory is pinned when CUDA is available.
    """
    dataset = build_dataset(cfg)
    workers = loader_workers(cfg.data.num_workers)
    batch, chain = cfg.optim.batch_size, cfg.data.chain_length
    # One lane per (process, worker, batch slot): the DataLoader deals batches to workers in turn,
    # so a lane's clips reach the same worker every `workers` batches (clips.py, "Chained order").
    per_process = max(workers, 1) * batch
    sampler = ClipSampler(
        dataset.index, shuffle=True, seed=cfg.train.seed, num_replicas=world_size, rank=rank,
        chain_length=chain, lanes=world_size * per_process,
    )
    if chain:
        # A worker's lanes each keep their last clip's K frames; twice that covers the ragged rounds.
        dataset.memo = FrameMemo(2 * dataset.index.num_frames * batch)
    if rank == 0:
        order = f"chains of {chain} clips ({world_size * per_process} lanes)" if chain else "shuffled clips"
        log.info(
            "data: %d sources, %d clips (%d per process per epoch), %d workers, %s",
            len(dataset.sources), len(dataset), sampler.num_samples, workers, order,
        )
    # The DataLoader draws a worker base seed from its generator each time an iterator starts
    # (every epoch, and at a resume). From the global RNG that draw would shift the trainer's
    # random stream (drop-path) between an uninterrupted and a resumed run. The views do not use
    # worker seeds (they are seeded by (seed, epoch, clip)), so a private generator costs nothing.
    generator = torch.Generator()
    generator.manual_seed(cfg.train.seed)
    loader = DataLoader(
        dataset,
        generator=generator,
        batch_size=cfg.optim.batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_raw_clips if dataset.views_on_device else collate_clips,
        pin_memory=torch.cuda.is_available(),
        drop_last=True,
        persistent_workers=workers > 0,
        prefetch_factor=2 if workers > 0 else None,  # float32 batches: ~190 MB each at paper sizes
        worker_init_fn=functools.partial(_worker_init, os.getpid()) if workers > 0 else None,
        multiprocessing_context=worker_context() if workers > 0 else None,
    )
    return loader, sampler
