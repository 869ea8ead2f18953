"""Clip enumeration, the distributed/resumable sampler, and real batches from a DataLoader."""

from __future__ import annotations

import itertools

import pytest
import torch

from vidistill.config import build_config
from vidistill.data.clips import ClipIndex, ClipSampler, chained_order, clip_span
from vidistill.data.dataset import ClipBatch, build_dataloader, build_dataset, collate_clips


def all_clips(index: ClipIndex) -> list[tuple[int, list[int]]]:
    return [index.frames(c) for c in range(len(index))]


def test_every_valid_start_and_never_across_sources():
    lengths = [10, 3, 25, 17]
    index = ClipIndex(lengths, num_frames=3, frame_stride=4)  # span 9
    assert clip_span(3, 4) == 9
    clips = all_clips(index)
    for source, frames in clips:
        assert frames == [frames[0], frames[0] + 4, frames[0] + 8]
        assert frames[-1] < lengths[source]  # t + (K-1)Δ < len(source): inside ONE source
    starts = {s: [f[0] for src, f in clips if src == s] for s in range(4)}
    assert starts == {0: [0, 1], 1: [], 2: list(range(17)), 3: list(range(9))}
    assert len(index) == 2 + 0 + 17 + 9


def test_clip_stride_subsamples_starts():
    index = ClipIndex([20, 12], num_frames=2, frame_stride=5, clip_stride=4)
    assert [(s, f[0]) for s, f in all_clips(index)] == [(0, 0), (0, 4), (0, 8), (0, 12), (1, 0), (1, 4)]
    with pytest.raises(IndexError):
        index.locate(len(index))


def ids(sampler: ClipSampler) -> list[int]:
    return [c for c, _ in sampler]


def test_sampler_is_deterministic_and_epoch_dependent():
    index = ClipIndex([50, 40], 3, 5)
    a, b = ClipSampler(index, seed=3), ClipSampler(index, seed=3)
    assert ids(a) == ids(b)
    assert sorted(ids(a)) == list(range(len(index)))  # a permutation: every clip once
    first = ids(a)
    a.set_epoch(1)
    assert ids(a) != first and sorted(ids(a)) == sorted(first)
    assert {e for _, e in a} == {1}  # the epoch travels with each clip (seeds its views)
    assert ids(ClipSampler(index, seed=4)) != first
    assert ids(ClipSampler(index, shuffle=False)) == list(range(len(index)))


@pytest.mark.parametrize("replicas", [2, 3, 4])
def test_distributed_shards_are_disjoint_and_equal(replicas):
    index = ClipIndex([31, 20], 2, 3)  # 29 + 18 = 47 clips: not divisible by 2, 3 or 4
    samplers = [ClipSampler(index, seed=1, num_replicas=replicas, rank=r, epoch=2) for r in range(replicas)]
    shards = [ids(s) for s in samplers]
    assert len({len(s) for s in shards}) == 1 and all(len(s) == len(samplers[0]) for s in shards)
    flat = [c for s in shards for c in s]
    assert set(flat) == set(range(len(index)))
    pad = len(flat) - len(index)
    assert 0 <= pad < replicas  # disjoint up to DistributedSampler's wrap-around padding
    assert len(flat) - len(set(flat)) == pad
    same = ClipSampler(index, seed=1, num_replicas=replicas, rank=1, epoch=2)
    assert ids(same) == shards[1]


def test_resume_mid_epoch_skips_seen_clips():
    index = ClipIndex([60, 45], 3, 4)
    full = ClipSampler(index, seed=7, num_replicas=2, rank=1, epoch=3)
    order = ids(full)
    resumed = ClipSampler(index, seed=7, num_replicas=2, rank=1, epoch=3, start_index=10)
    assert ids(resumed) == order[10:] and len(resumed) == len(order) - 10
    # The trainer's protocol: set_epoch (resets the position) then set_start.
    full.set_epoch(3)
    full.set_start(24)
    assert ids(full) == order[24:]
    full.set_epoch(4)
    assert len(full) == full.num_samples


def test_dataset_item_is_deterministic_per_clip_and_epoch(episode_tree):
    cfg = build_config("cpu-tiny", overrides={"data.videos": [str(episode_tree)], "data.frame_stride": 8})
    ds = build_dataset(cfg)
    a, cid = ds[(5, 0)]
    b, _ = ds[(5, 0)]
    c, _ = ds[(5, 1)]
    assert cid == 5
    assert torch.equal(a.globals, b.globals) and torch.equal(a.locals, b.locals)
    assert not torch.equal(a.globals, c.globals)  # a new epoch draws new views
    batch = collate_clips([ds[(i, 0)] for i in range(4)])
    assert batch.globals.shape == (4, 3, 3, 96, 96) and batch.clip_ids.tolist() == [0, 1, 2, 3]


def test_real_dataloader_batches(episode_tree, video_file):
    cfg = build_config(
        "cpu-tiny",
        overrides={"data.videos": [str(episode_tree), str(video_file)], "data.frame_stride": 8,
                   "data.num_workers": 2, "optim.batch_size": 4},
    )
    loader, sampler = build_dataloader(cfg)
    ds = loader.dataset
    # ep_03 (10 frames) is too short for K=3, Δ=8; the rest give (n − 16) clips each.
    assert len(ds) == (48 - 16) + (64 - 16) + (40 - 16) + (80 - 16)
    assert len(loader) == len(sampler) // 4
    seen = []
    for n, batch in enumerate(loader):
        assert isinstance(batch, ClipBatch)
        # uint8 across the worker boundary (the trainer normalises on the device)
        assert batch.globals.shape == (4, 3, 3, 96, 96) and batch.globals.dtype == torch.uint8
        assert batch.locals.shape == (4, 2, 5, 3, 48, 48) and batch.locals.dtype == torch.uint8
        assert batch.globals.float().std() > 10  # image content, not a constant
        seen += batch.clip_ids.tolist()
        if n == 3:
            break
    assert len(set(seen)) == len(seen)
    # Resume: the same epoch from position 8 gives the same clips and the same views as before.
    sampler.set_epoch(0)
    sampler.set_start(8)
    resumed = next(iter(loader))
    assert resumed.clip_ids.tolist() == seen[8:12]


@pytest.mark.parametrize(
    ("objective", "delta", "frames"), [("dino", 0, 1), ("dino", 5, 2), ("dense+global", 0, 3)]
)
def test_objective_picks_clip_length_and_views(episode_tree, objective, delta, frames):
    cfg = build_config(
        "cpu-tiny",
        overrides={"data.videos": [str(episode_tree)], "objective": objective, "data.time_aug_delta": delta,
                   "data.frame_stride": 8, "data.num_workers": 0, "optim.batch_size": 2},
    )
    ds = build_dataset(cfg)
    assert ds.index.num_frames == frames
    batch = collate_clips([ds[(i, 0)] for i in range(2)])
    if objective == "dino":
        # As many views as the method: 2 globals + (K−1)·L locals (cfg.data.frame_dino_num_local).
        local = cfg.data.frame_dino_num_local
        assert local == 10 and batch.globals.shape == (2, 2, 3, 96, 96) and batch.locals.shape == (2, 1, local, 3, 48, 48)
        assert ds.index.frame_stride == (delta if delta else 1)
    else:
        assert batch.globals.shape == (2, 3, 3, 96, 96) and batch.locals.shape == (2, 2, 5, 3, 48, 48)
    assert batch.globals.dtype == torch.uint8 and batch.globals.float().std() > 0


def test_iterating_the_loader_leaves_the_global_rng_alone(episode_tree):
    # A resumed run restores torch's RNG from its checkpoint; if starting an epoch drew from the
    # global RNG, the trainer's random stream (drop-path) would differ from the uninterrupted run.
    cfg = build_config("cpu-tiny", overrides={"data.videos": [str(episode_tree)], "data.frame_stride": 8,
                                              "data.num_workers": 0, "optim.batch_size": 2})
    loader, _ = build_dataloader(cfg)
    torch.manual_seed(123)
    next(iter(loader))
    after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(after, torch.rand(3))


# ---- chained order (data.chain_length): clips that share frames, read by one worker in turn ----


def test_chained_order_deals_whole_chains_to_lanes():
    index = ClipIndex([40, 25, 7], 3, 5)  # 30 + 15 + 0 clips
    g = torch.Generator()
    g.manual_seed(0)
    order = chained_order(index, chain_length=4, lanes=6, generator=g).tolist()
    assert sorted(order) == list(range(len(index)))  # a permutation: every clip once
    lanes: dict[int, list[tuple[int, int]]] = {}
    for position, clip in enumerate(order):
        source, frames = index.frames(clip)
        lanes.setdefault(position % 6, []).append((source, frames[0]))
    steps = []
    for lane in lanes.values():  # ragged last rounds aside, a lane's next clip is its chain's next
        steps += [b[1] - a[1] for a, b in zip(lane, lane[1:], strict=False) if a[0] == b[0] and b[1] - a[1] == 5]
    # 15 chains (source 0: 5 phases x 6 clips -> 4 + 2; source 1: 5 x 3), so 30 steps inside chains;
    # nearly all of them are a lane's next clip (not all: the last rounds are ragged).
    assert 0.8 * 30 <= len(steps) <= 30
    g.manual_seed(0)
    assert chained_order(index, 4, 6, g).tolist() == order  # drawn from the generator alone
    g.manual_seed(1)
    assert chained_order(index, 4, 6, g).tolist() != order


def test_chained_sampler_shards_resumes_and_keeps_lanes_per_rank():
    index = ClipIndex([90, 61], 3, 4)
    replicas, lanes = 2, 2 * 3  # 2 ranks x (1 worker x batch 3)
    samplers = [ClipSampler(index, seed=5, num_replicas=replicas, rank=r, chain_length=6, lanes=lanes) for r in range(2)]
    shards = [ids(s) for s in samplers]
    flat = [c for s in shards for c in s]
    assert len(shards[0]) == len(shards[1]) and set(flat) == set(range(len(index)))
    assert ids(ClipSampler(index, seed=5)) != shards[0][: len(index)]  # not the shuffled order
    # A rank's batch of 3 continues the chains of its previous batch: same sources, 4 frames on.
    first, second = shards[0][:3], shards[0][3:6]
    starts = [index.frames(c) for c in first], [index.frames(c) for c in second]
    assert sum(a[0] == b[0] and b[1][0] - a[1][0] == 4 for a, b in zip(*starts, strict=True)) >= 2
    resumed = ClipSampler(index, seed=5, num_replicas=2, rank=1, chain_length=6, lanes=lanes, start_index=9)
    assert ids(resumed) == shards[1][9:]


@pytest.mark.parametrize("workers", [0, 2])
def test_chained_loader_decodes_shared_frames_once_and_keeps_the_views(video_file, workers):
    overrides = {"data.videos": [str(video_file)], "data.frame_stride": 8, "data.num_workers": workers,
                 "optim.batch_size": 2, "data.chain_length": 8}
    loader, _ = build_dataloader(build_config("cpu-tiny", overrides=overrides))
    plain = build_dataset(build_config("cpu-tiny", overrides={**overrides, "data.chain_length": 0}))
    assert plain.memo.capacity == 0 and loader.dataset.memo.capacity == 2 * 3 * 2
    batches = list(itertools.islice(loader, 12))
    for batch in batches:  # a memo frame is the decoded frame: the same views as a plain read
        expected = collate_clips([plain[(c, 0)] for c in batch.clip_ids.tolist()])
        assert torch.equal(batch.globals, expected.globals) and torch.equal(batch.locals, expected.locals)
    if workers == 0:  # the memo's counts live in this process
        memo = loader.dataset.memo
        assert memo.misses + memo.hits == 12 * 2 * 3
        assert memo.misses <= 0.5 * (memo.misses + memo.hits)  # K=3: ~1 new frame per clip in a chain


def test_memo_frames_are_read_only(video_file):
    from vidistill.data.dataset import FrameMemo
    from vidistill.data.sources import VideoFileSource

    memo = FrameMemo(4)
    frame = memo.read(VideoFileSource(video_file), 0, [3])[0]
    with pytest.raises(ValueError):
        frame[0, 0, 0] = 1
    assert memo.read(VideoFileSource(video_file), 0, [3])[0] is frame and (memo.hits, memo.misses) == (1, 1)
