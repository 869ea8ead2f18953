"""uint8 batches across the DataLoader's worker boundary, normalised by the trainer on the device:
the same loss at step 0 and the same weights after 5 steps as the path that normalised in the
worker (float32 batches). Tolerance: none (bit-identical), the same float32 ops per element."""

from __future__ import annotations

import itertools

import pytest
import torch

from vidistill.config import build_config
from vidistill.data.dataset import ClipBatch, build_dataloader
from vidistill.train.distributed import DistributedContext
from vidistill.train.trainer import Trainer

TINY = {"data.frame_stride": 8, "optim.batch_size": 2, "data.global_size": 32, "data.local_size": 16,
        "data.num_local": 2, "data.num_workers": 0, "model.out_dim": 64, "model.head_hidden_dim": 32,
        "model.head_bottleneck_dim": 16, "model.model_args": {"depth": 2}, "train.progress": False,
        "train.device": "cpu", "adapt.drift_every": 0}


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    from tests.conftest import write_video

    return write_video(tmp_path_factory.mktemp("uint8") / "v.mp4", 40)


def worker_normalised(views: torch.Tensor, cfg) -> torch.Tensor:
    """What the DataLoader workers did before (commit 5f684e2's ``_ViewBuilder._render``)."""
    mean = torch.tensor(cfg.data.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(cfg.data.std, dtype=torch.float32).view(1, 3, 1, 1)
    return views.to(torch.float32).mul_(1.0 / (255.0 * std)).sub_(mean / std)


def test_uint8_batches_train_bit_identical_weights_to_float_batches(video, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = build_config("cpu-tiny", overrides={"data.videos": [str(video)], "train.output": str(tmp_path / "a"), **TINY})
        batches = list(itertools.islice(build_dataloader(cfg)[0], 5))
        assert batches[0].globals.dtype == torch.uint8
        runs = {}
        for path in ("uint8", "float32"):
            cfg.train.output = str(tmp_path / path)
            trainer = Trainer(cfg, DistributedContext())  # seeds torch: both runs start alike
            initial = {k: v.clone() for k, v in trainer.student.state_dict().items()}
            if path == "float32":  # the unoptimised path: floats from the worker, used as they come
                trainer.normalise = lambda x: x
                feed = [ClipBatch(worker_normalised(b.globals, cfg), worker_normalised(b.locals, cfg), b.clip_ids)
                        for b in batches]
            else:
                feed = batches
            losses = [trainer.train_step(b, step)["loss"] for step, b in enumerate(feed)]
            runs[path] = (losses, {k: v.clone() for k, v in trainer.student.state_dict().items()})
    finally:
        torch.set_num_threads(threads)
    (loss_u8, weights_u8), (loss_f32, weights_f32) = runs["uint8"], runs["float32"]
    assert loss_u8 == loss_f32  # every step's loss, step 0 included
    for k, v in weights_u8.items():
        assert torch.equal(v, weights_f32[k]), k
    assert any(not torch.equal(v, initial[k]) for k, v in weights_u8.items())  # the 5 steps did train
