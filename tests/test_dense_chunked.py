"""The chunked soft cross-entropy of the dense loss: the same loss, statistics and gradients as
the whole-tensor expression it replaced, for any chunking. Tolerance: float32 rounding (rel 1e-5
on the loss and stats, 1e-6 absolute on gradients of size ~1e-3); the gradient is computed by its
closed form, (σ_τS(s) − p)/τS, where autograd took the same steps one op at a time."""

from __future__ import annotations

import pytest
import torch

from vidistill.objective.cross_entropy import (
    chunked_distillation,
    distillation_stats,
    soft_cross_entropy,
    teacher_probs,
)
from vidistill.objective.dense import DenseNextFrameLoss

TAU_T, TAU_S = 0.04, 0.1


def whole(student, teacher, centre):
    p_t = teacher_probs(teacher, centre, TAU_T)
    loss = soft_cross_entropy(p_t, student, TAU_S).mean()
    return loss, distillation_stats(loss, p_t)


def case(shape=(2, 2, 9, 64), seed=0):
    g = torch.Generator().manual_seed(seed)
    student = (torch.randn(shape, generator=g) * 3).requires_grad_()
    teacher = torch.randn(shape, generator=g) * 3
    centre = torch.randn(1, shape[-1], generator=g) * 0.1
    return student, teacher, centre


@pytest.mark.parametrize("chunk_rows", [1, 5, 36, 1000])  # one row, uneven chunks, exact, one chunk
def test_chunked_matches_the_whole_tensor_loss_stats_and_gradient(chunk_rows):
    student, teacher, centre = case()
    ref_loss, ref_stats = whole(student, teacher, centre)
    (ref_loss * 2.5).backward()  # an upstream gradient that is not 1 (the dense weight)
    ref_grad, student.grad = student.grad.clone(), None
    loss, stats = chunked_distillation(student, teacher, centre, TAU_T, TAU_S, chunk_elements=chunk_rows * 64)
    (loss * 2.5).backward()
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=0)
    for name in ("loss", "teacher_entropy", "kl", "prototypes_used"):
        torch.testing.assert_close(getattr(stats, name), getattr(ref_stats, name), rtol=1e-5, atol=1e-6)
    assert ref_grad.abs().max() > 1e-3  # a gradient worth comparing
    torch.testing.assert_close(student.grad, ref_grad, rtol=1e-4, atol=1e-6)


def test_bf16_student_gets_a_bf16_gradient_close_to_the_whole_path():
    student, teacher, centre = case(seed=1)
    s16 = student.detach().bfloat16().requires_grad_()
    ref_loss, _ = whole(s16, teacher, centre)
    ref_loss.backward()
    ref_grad, s16.grad = s16.grad.clone(), None
    loss, _ = chunked_distillation(s16, teacher, centre, TAU_T, TAU_S, chunk_elements=7 * 64)
    loss.backward()
    assert s16.grad.dtype == torch.bfloat16
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=0)
    torch.testing.assert_close(s16.grad.float(), ref_grad.float(), rtol=1e-2, atol=1e-5)  # bf16 rounding


def test_dense_loss_is_the_chunked_distillation_and_updates_its_centre():
    student, teacher, centre = case(seed=2)
    loss_fn = DenseNextFrameLoss(64, TAU_S)
    loss_fn.centre.value.copy_(centre)
    loss, stats = loss_fn(student, teacher, TAU_T)
    ref_loss, ref_stats = whole(student, teacher, centre)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=0)
    torch.testing.assert_close(stats.prototypes_used, ref_stats.prototypes_used, rtol=1e-5, atol=0)
    assert not torch.equal(loss_fn.centre.value, centre)
    with pytest.raises(RuntimeError, match="backward called twice"):
        loss.backward(retain_graph=True)
        loss.backward()


def test_cpu_sized_chunks_train_like_one_chunk(tmp_path, monkeypatch, make_video):
    """The CPU's cache-sized chunks (vidistill.objective.chunks) against one chunk for everything,
    through the real Trainer with cpu-tiny's Sinkhorn-Knopp centring: the same loss at step 0 and
    the same weights after 5 steps, up to float32 rounding (Sinkhorn-Knopp sums its columns
    chunk by chunk; the cross-entropy's rows are independent) as AdamW carries it."""
    import itertools

    from tests.test_train_uint8 import TINY
    from vidistill.config import build_config
    from vidistill.data.dataset import build_dataloader
    from vidistill.objective import chunks
    from vidistill.train.distributed import DistributedContext
    from vidistill.train.trainer import Trainer

    video = make_video(tmp_path / "v.mp4", 40)
    cfg = build_config("cpu-tiny", overrides={"data.videos": [str(video)], **TINY})
    assert cfg.optim.centring == "sinkhorn_knopp"
    batches = list(itertools.islice(build_dataloader(cfg)[0], 5))
    runs = {}
    for name, elements in (("one chunk", 1 << 30), ("7-row chunks", 7 * cfg.model.out_dim)):
        monkeypatch.setattr(chunks, "CPU_CHUNK_ELEMENTS", elements)
        cfg.train.output = str(tmp_path / name)
        trainer = Trainer(cfg, DistributedContext())
        losses = [trainer.train_step(b, step)["loss"] for step, b in enumerate(batches)]
        runs[name] = (losses, {k: v.clone() for k, v in trainer.student.state_dict().items()})
    (loss_a, w_a), (loss_b, w_b) = runs.values()
    assert loss_a[0] == pytest.approx(loss_b[0], rel=1e-6)
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    diff = torch.cat([(w_b[k] - v).abs().flatten() for k, v in w_a.items()])
    # Measured: median 2e-9, 0.04% of the weights over 1e-6. AdamW divides by √v, so a weight
    # whose gradient is at rounding level moves by up to lr a step either way: the bound for the few.
    assert (diff > 1e-6).float().mean() < 0.01
    assert diff.max() <= 5 * cfg.optim.base_lr
