"""DINOv2's Sinkhorn-Knopp centring: the same targets as DINOv2's own algorithm, in log space
(chunked, over gloo processes), and sharp, balanced targets where the running-mean centre gives
uniform ones."""

import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vidistill.config import build_config
from vidistill.model import Student, Teacher
from vidistill.objective import (
    Centre,
    DenseNextFrameLoss,
    GlobalLoss,
    NextFrameDistillation,
    SinkhornKnoppCentre,
    build_centre,
    sinkhorn_knopp_log_scaling,
    soft_cross_entropy,
    teacher_probs,
)
from vidistill.objective.cross_entropy import entropy


def dinov2_sinkhorn_knopp(teacher_output, teacher_temp, n_iterations=3):
    """facebookresearch/dinov2 ``DINOLoss.sinkhorn_knopp_teacher`` on one process, as written there."""
    q = torch.exp(teacher_output.float() / teacher_temp).t()  # K x B
    b, k = q.shape[1], q.shape[0]
    q /= q.sum()
    for _ in range(n_iterations):
        q /= q.sum(dim=1, keepdim=True)
        q /= k
        q /= q.sum(dim=0, keepdim=True)
        q /= b
    q *= b
    return q.t()


def sk_targets(z, temp, iterations=3, chunk=None):
    return teacher_probs(z, -temp * sinkhorn_knopp_log_scaling(z, temp, iterations, chunk), temp)


@pytest.mark.parametrize("iterations", [1, 3, 10])
def test_targets_match_dinov2s_algorithm(iterations):
    torch.manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(40, 64), dim=-1)  # the head's outputs are cosines
    ours = sk_targets(z, 0.1, iterations)
    assert torch.allclose(ours, dinov2_sinkhorn_knopp(z, 0.1, iterations), atol=1e-6)
    assert torch.allclose(ours.sum(-1), torch.ones(40), atol=1e-5)


def test_chunked_rows_give_the_same_scaling():
    torch.manual_seed(1)
    z = torch.randn(50, 32)
    whole = sinkhorn_knopp_log_scaling(z, 0.05)
    assert torch.allclose(sinkhorn_knopp_log_scaling(z, 0.05, chunk=7), whole, atol=1e-5)


def test_cold_temperature_stays_finite_where_the_plain_algorithm_overflows():
    torch.manual_seed(2)
    z = torch.nn.functional.normalize(torch.randn(64, 256), dim=-1) * 1.0
    z[0] = 1.0  # exp(1 / 0.005) = inf in float32
    assert not torch.isfinite(dinov2_sinkhorn_knopp(z, 0.005)).all()
    p = sk_targets(z, 0.005)
    assert torch.isfinite(p).all()
    assert torch.allclose(p.sum(-1), torch.ones(64), atol=1e-5)


def test_many_iterations_balance_the_prototypes():
    torch.manual_seed(3)
    z = torch.randn(256, 16)
    z[:, 0] += 3.0  # one prototype dominates every row before balancing
    p = sk_targets(z, 0.5, iterations=50)
    assert torch.allclose(p.mean(0), torch.full((16,), 1 / 16), atol=1e-3)
    assert teacher_probs(z, torch.zeros(1, 16), 0.5).mean(0)[0] > 0.5


def test_a_dominant_prototype_is_balanced_at_once_not_after_the_centre_catches_up():
    """The from-scratch path of issue 17: every row's largest output on the same prototype.
    Targets centred by the running mean of the batches before (still zero here) are one-hot on
    that prototype for the whole batch; Sinkhorn-Knopp's are as sharp as the rows' own
    differences allow and spread over the batch's rows."""
    torch.manual_seed(4)
    k, rows, temp = 256, 64, 0.04
    z = 0.1 * torch.randn(rows, k)
    z[:, 0] += 0.5
    ema = Centre(k)
    p_ema = teacher_probs(z, ema.offset(z, temp), temp)
    p_sk = teacher_probs(z, SinkhornKnoppCentre(k).offset(z, temp), temp)
    assert p_ema[:, 0].mean() > 0.9  # one prototype takes the batch
    assert entropy(p_sk.mean(0)).exp() > rows / 2
    assert entropy(p_sk).mean() < 0.8 * math.log(k)  # each row still sharp
    assert p_sk[:, 0].mean() < 2 / rows


def test_losses_use_the_batch_own_sinkhorn_targets():
    torch.manual_seed(5)
    teacher, student = torch.randn(2, 2, 9, 32), torch.randn(2, 2, 9, 32)
    loss, stats = DenseNextFrameLoss(32, 0.1, centring="sinkhorn_knopp")(student, teacher, 0.05)
    p = sk_targets(teacher, 0.05)
    expected = soft_cross_entropy(p, student, 0.1).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert stats.teacher_entropy.item() == pytest.approx(entropy(p).mean().item(), rel=1e-5)
    s_cls, t_cls = torch.randn(4, 2, 3, 32), torch.randn(4, 2, 32)
    loss, _ = GlobalLoss(32, 0.1, centring="sinkhorn_knopp")(s_cls, t_cls, 0.05)
    p = sk_targets(t_cls, 0.05)
    assert loss.item() == pytest.approx(soft_cross_entropy(p.unsqueeze(2), s_cls, 0.1).mean().item(), rel=1e-5)


def test_unknown_centring_is_refused():
    with pytest.raises(ValueError, match="sinkhorn_knopp"):
        build_centre("mean", 8)
    with pytest.raises(ValueError, match="optim.centring"):
        build_config("cpu-tiny", overrides={"optim.centring": "mean"})


def test_method_trains_a_step_with_sinkhorn_centring():
    torch.manual_seed(6)
    cfg = build_config("cpu-tiny", overrides={
        "optim.centring": "sinkhorn_knopp", "model.out_dim": 64, "model.head_hidden_dim": 32,
        "model.head_bottleneck_dim": 16, "data.global_size": 32, "data.local_size": 16, "data.num_local": 2,
        "data.num_frames": 3, "train.output": "unused"})
    student = Student(cfg)
    teacher = Teacher(student)
    objective = NextFrameDistillation(cfg)
    g, loc = torch.rand(2, 3, 3, 32, 32), torch.rand(2, 2, 2, 3, 16, 16)
    loss, stats = objective(student, teacher, g, loc, 0.04)
    loss.backward()
    assert torch.isfinite(loss)
    assert student.backbone.patch_embed.proj.weight.grad.abs().sum() > 0
    # The last batch's offset is state, as the running centre is (checkpoints keep one layout).
    assert set(objective.state_dict()) == {"dense_loss.centre.value", "global_loss.centre.value"}
    assert objective.dense_loss.centre.value.abs().sum() > 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_scaling(rank, world, port, z, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        rows = z.shape[0] // world
        out[rank] = sinkhorn_knopp_log_scaling(z[rank * rows:(rank + 1) * rows], 0.05, chunk=5)
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(300)
def test_two_gloo_processes_balance_over_the_whole_batch():
    torch.manual_seed(7)
    z = torch.randn(24, 16)
    out = torch.zeros(2, 16).share_memory_()
    mp.spawn(_rank_scaling, args=(2, _free_port(), z, out), nprocs=2, join=True)
    whole = sinkhorn_knopp_log_scaling(z, 0.05)
    assert torch.allclose(out[0], whole, atol=1e-5)
    assert torch.allclose(out[1], whole, atol=1e-5)


@pytest.mark.parametrize("scale", [1.0, 100.0, 3000.0])
def test_logsumexp_without_the_slow_path_equals_torchs(scale):
    """centring.logsumexp raises arguments far below the max (where torch's CPU exp is ~20x
    slower) and must still give torch.logsumexp's float32 result, infinities included."""
    from vidistill.objective.centring import logsumexp

    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 700, generator=g) * scale  # at τ = 0.01, logits/τ spread over thousands
    x[3] = float("-inf")  # a row of exp(−inf) = 0 terms
    x[5, :10] = float("-inf")
    x[7, 3] = float("inf")
    for dim in (0, -1):
        assert torch.equal(logsumexp(x, dim), torch.logsumexp(x, dim)), dim
