"""Which clips exist and in which order a process sees them (docs/METHOD.md "Data: clips").

A clip is ``K`` frames ``t, t+Δ, …, t+(K−1)Δ`` of ONE source; every ``t`` with
``t + (K−1)Δ < len(source)`` is a valid start, optionally keeping every ``clip_stride``-th. Clips
are numbered 0..N−1 source by source (:class:`ClipIndex`); nothing is materialised per clip, so a
log with millions of frames costs a few integers per source.

:class:`ClipSampler` is a ``DistributedSampler`` for those numbers, plus mid-epoch resume: it
yields ``(clip_id, epoch)`` pairs so the dataset can seed each clip's augmentation from
(seed, epoch, clip) alone. That makes a clip's views independent of worker count and of whether
the run was interrupted: a resumed run sees exactly the batches the uninterrupted run would have.

Chained order (``data.chain_length``, off by default). Clips ``t`` and ``t+Δ`` of a source share
K−1 frames. In a shuffled order each clip decodes its K frames afresh (a seek each, for short-GOP
video); :func:`chained_order` instead cuts every source's clips into *chains* (starts Δ apart,
``chain_length`` of them), deals whole chains to ``lanes`` and emits one clip of every lane in turn.
When ``lanes`` is (processes × DataLoader workers × batch), every lane's clips land in the same
worker one batch apart, so the worker decodes ~1 new frame per clip and takes the other K−1 from
its :class:`~vidistill.data.dataset.FrameMemo`. A batch still holds ``batch`` different chains drawn
from the whole log, but consecutive batches of a worker continue the same chains: the order is
less random, which is why it is opt-in.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from vidistill.errors import VideoError

log = logging.getLogger(__name__)


def clip_span(num_frames: int, frame_stride: int) -> int:
    """Frames a clip covers: (K−1)Δ+1. A source needs at least this many frames."""
    return (num_frames - 1) * frame_stride + 1


def select_usable(sources: Sequence[Any], num_frames: int, frame_stride: int) -> list[Any]:
    """The sources long enough for one clip. Each short one is named once; none usable is an error."""
    span = clip_span(num_frames, frame_stride)
    usable = []
    for src in sources:
        if len(src) >= span:
            usable.append(src)
        else:
            log.warning(
                "%s: %d frames, too short for a clip of K=%d frames at stride %d (needs %d); skipping it",
                src.name, len(src), num_frames, frame_stride, span,
            )
    if not usable:
        # By source name (episode x camera): the sources of a LeRobot v3.0 / HDF5 / bag file share one path.
        names = ", ".join(f"{s.name} ({len(s)})" for s in sources[:5]) + (" …" if len(sources) > 5 else "")
        longest = max((len(s) for s in sources), default=0)
        fits = f" (data.frame_stride={(longest - 1) // (num_frames - 1)} fits the longest)" if (
            num_frames > 1 and longest > num_frames) else ""
        raise VideoError(
            f"no source is long enough for a clip of K={num_frames} frames at stride {frame_stride} "
            f"(needs {span} frames; frames per source: {names}). Lower data.frame_stride{fits} / "
            f"data.num_frames or use longer video"
        )
    return usable


class ClipIndex:
    """Clip numbering: clip id <-> (source index, start frame), without a per-clip table."""

    def __init__(self, lengths: Sequence[int], num_frames: int, frame_stride: int, clip_stride: int = 1):
        if num_frames < 1 or frame_stride < 1 or clip_stride < 1:
            raise ValueError("num_frames, frame_stride and clip_stride must be >= 1")
        self.lengths = [int(n) for n in lengths]
        self.num_frames, self.frame_stride, self.clip_stride = num_frames, frame_stride, clip_stride
        span = clip_span(num_frames, frame_stride)
        # Valid starts 0..n−span, every clip_stride-th: ceil((n−span+1)/clip_stride) per source.
        self.counts = np.array(
            [max(0, -(-(n - span + 1) // clip_stride)) for n in self.lengths], dtype=np.int64
        )
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, clip_id: int) -> tuple[int, int]:
        """(source index, start frame) of a clip."""
        if not 0 <= clip_id < len(self):
            raise IndexError(f"clip {clip_id} out of range (0..{len(self) - 1})")
        source = int(np.searchsorted(self.offsets, clip_id, side="right") - 1)
        return source, int(clip_id - self.offsets[source]) * self.clip_stride

    def frames(self, clip_id: int) -> tuple[int, list[int]]:
        """(source index, the K frame indices) of a clip, increasing (cheap sequential decode)."""
        source, start = self.locate(clip_id)
        return source, [start + k * self.frame_stride for k in range(self.num_frames)]


def chained_order(index: ClipIndex, chain_length: int, lanes: int, generator: torch.Generator) -> torch.Tensor:
    """Every clip once, in chains dealt to lanes (module docstring): position ``p`` of the result
    belongs to lane ``p % lanes`` while every lane still has clips (the last round of an epoch is
    ragged). Vectorised: a few sorts over all clip ids, no Python loop per clip."""
    n = len(index)
    if n == 0:
        return torch.zeros(0, dtype=torch.int64)
    ids = np.arange(n, dtype=np.int64)
    source = np.repeat(np.arange(len(index.counts)), index.counts)
    start = (ids - index.offsets[source]) * index.clip_stride
    phase = start % index.frame_stride
    ids = ids[np.lexsort((start, phase, source))]  # by source, then phase (start mod Δ), then start
    source, phase = source[ids], phase[ids]
    new_run = np.r_[True, (source[1:] != source[:-1]) | (phase[1:] != phase[:-1])]
    run_start = np.maximum.accumulate(np.where(new_run, np.arange(n), 0))
    member = (np.arange(n) - run_start) % chain_length  # place of each clip in its chain
    chain = np.cumsum(member == 0) - 1
    num_chains = int(chain[-1]) + 1
    shuffled = torch.randperm(num_chains, generator=generator).numpy()  # chain at each position
    position = np.empty(num_chains, dtype=np.int64)
    position[shuffled] = np.arange(num_chains)
    length = np.bincount(chain, minlength=num_chains)[shuffled]  # chain lengths, in position order
    lane = np.arange(num_chains) % lanes
    # The clips a lane has emitted before each of its chains: a running sum per lane.
    by_lane = np.lexsort((np.arange(num_chains), lane))
    before = np.empty(num_chains, dtype=np.int64)
    ends = np.cumsum(length[by_lane])
    lane_start = np.r_[0, ends[:-1]]
    first_of_lane = np.r_[True, lane[by_lane][1:] != lane[by_lane][:-1]]
    before[by_lane] = lane_start - np.maximum.accumulate(np.where(first_of_lane, lane_start, 0))
    pos = position[chain]
    time = before[pos] + member  # the clip's turn within its lane
    return torch.from_numpy(ids[np.lexsort((lane[pos], time))])


class ClipSampler(Sampler):
    """Shuffled clip order, sharded across processes like ``DistributedSampler``.

    * The order is a permutation drawn from ``seed + epoch`` (the same on every rank).
    * It is padded by wrapping around to a multiple of ``num_replicas`` and rank ``r`` takes
      positions ``r, r+R, r+2R, …``: shards are disjoint up to that padding and of equal length,
      so every rank runs the same number of steps (DDP would hang otherwise).
    * ``set_epoch(e)`` chooses the epoch (and resets the resume position);
      ``set_start(n)`` skips the first ``n`` clips of this rank's shard in the current epoch, i.e.
      the clips already consumed before an interruption (``batches_done * batch_size``).
    * ``len(sampler)`` is what is left of the epoch for this rank; ``num_samples`` the whole shard.

    * ``chain_length`` > 0: the epoch's order is :func:`chained_order` over ``lanes`` lanes
      (drawn from the same ``seed + epoch``; then sharded and resumed the same way).

    Yields ``(clip_id, epoch)``.
    """

    def __init__(
        self,
        index: ClipIndex,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        epoch: int = 0,
        start_index: int = 0,
        chain_length: int = 0,
        lanes: int = 1,
    ):
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"invalid rank {rank} for {num_replicas} replicas")
        if chain_length < 0 or lanes < 1:
            raise ValueError(f"chain_length must be >= 0 and lanes >= 1, got {chain_length} and {lanes}")
        self.index = index
        self.chain_length, self.lanes = int(chain_length), int(lanes)
        self.shuffle, self.seed = shuffle, int(seed)
        self.num_replicas, self.rank = num_replicas, rank
        self.num_clips = len(index)
        self.num_samples = math.ceil(self.num_clips / num_replicas) if self.num_clips else 0
        self.total_size = self.num_samples * num_replicas
        self.epoch = int(epoch)
        self.start_index = 0
        self.set_start(start_index)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.start_index = 0

    def set_start(self, start_index: int) -> None:
        if not 0 <= start_index <= self.num_samples:
            raise ValueError(f"start_index {start_index} outside this rank's epoch (0..{self.num_samples})")
        self.start_index = int(start_index)

    def order(self) -> torch.Tensor:
        """This rank's clip ids for the whole current epoch (before ``start_index``)."""
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            if self.chain_length:
                ids = chained_order(self.index, self.chain_length, self.lanes, g)
            else:
                ids = torch.randperm(self.num_clips, generator=g)
        else:
            ids = torch.arange(self.num_clips)
        if self.total_size > self.num_clips:  # wrap around (repeatedly, if R > N)
            reps = math.ceil(self.total_size / max(self.num_clips, 1))
            ids = ids.repeat(reps)[: self.total_size]
        return ids[self.rank : self.total_size : self.num_replicas]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        for clip_id in self.order()[self.start_index :].tolist():
            yield clip_id, epoch

    def __len__(self) -> int:
        return self.num_samples - self.start_index
