"""Reading a step's scalars in bursts (train.sync_every): the same records and weights as a read
per step, and a non-finite loss still stops the run before it is checkpointed."""

from __future__ import annotations

import json

import pytest
import torch

from vidistill.config import build_config
from vidistill.errors import TrainingError
from vidistill.runtime.checkpoints import load_checkpoint
from vidistill.train.trainer import train

TINY = {"data.frame_stride": 8, "optim.batch_size": 2, "data.global_size": 32, "data.local_size": 16,
        "data.num_local": 2, "data.num_workers": 0, "model.out_dim": 64, "model.head_hidden_dim": 32,
        "model.head_bottleneck_dim": 16, "model.model_args": {"depth": 2}, "train.progress": False,
        "train.device": "cpu", "adapt.drift_every": 0}


def _config(video, out, **over):
    return build_config("cpu-tiny", overrides={"data.videos": [str(video)], "train.output": str(out), **TINY, **over})


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    from tests.conftest import write_video

    return write_video(tmp_path_factory.mktemp("sync") / "v.mp4", 40)


def test_burst_reads_log_the_same_records_and_weights(video, tmp_path):
    runs = {}
    for every in (1, 3):
        out = tmp_path / f"every{every}"
        train(_config(video, out, **{"train.max_steps": 5, "train.sync_every": every}))
        log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
        runs[every] = (log, load_checkpoint(out / "checkpoint.pt")["teacher"])
    (log1, teacher1), (log3, teacher3) = runs[1], runs[3]
    assert [r["step"] for r in log3] == [1, 2, 3, 4, 5]
    assert [r["loss"] for r in log3] == [r["loss"] for r in log1]  # same computation, read later
    assert log3[0].keys() == log1[0].keys()
    for k, v in teacher1.items():
        assert torch.equal(v, teacher3[k]), k


def test_non_finite_loss_is_caught_before_the_next_checkpoint(video, tmp_path):
    out = tmp_path / "nan"
    cfg = _config(video, out, **{"train.max_steps": 12, "train.sync_every": 5, "train.checkpoint_every": 3,
                                 "optim.base_lr": 1e9, "optim.clip_grad": 0})
    with pytest.raises(TrainingError, match="non-finite loss at step"):
        train(cfg)
    if (out / "checkpoint.pt").exists():  # whatever was saved before the loss broke is finite
        for t in load_checkpoint(out / "checkpoint.pt")["teacher"].values():
            assert torch.isfinite(t).all()
