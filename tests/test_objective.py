"""The losses on tiny hand-checkable tensors, and who-sees-what on real networks."""

import math

import pytest
import torch

from vidistill.config import build_config
from vidistill.model import Student, Teacher, split_tokens, update_teacher
from vidistill.objective import (
    Centre,
    DenseNextFrameLoss,
    GlobalLoss,
    MultiCropDINOLoss,
    NextFrameDistillation,
    soft_cross_entropy,
    teacher_probs,
)
from vidistill.train.schedules import teacher_temperature

TAU_S, TAU_T = 0.1, 0.04


def test_soft_cross_entropy_matches_hand_computation():
    p = torch.tensor([[0.5, 0.25, 0.25]])
    logits = torch.log(torch.tensor([[0.2, 0.3, 0.5]])) * TAU_S  # σ(logits/τ_S) = [.2,.3,.5]
    expected = -(0.5 * math.log(0.2) + 0.25 * math.log(0.3) + 0.25 * math.log(0.5))
    assert soft_cross_entropy(p, logits, TAU_S).item() == pytest.approx(expected, rel=1e-5)


def test_perfect_dense_prediction_reaches_the_entropy_lower_bound():
    torch.manual_seed(0)
    teacher = torch.randn(2, 2, 4, 8)  # (B, K-1, P, C)
    loss_fn = DenseNextFrameLoss(8, TAU_S)
    # Student logits that give exactly the teacher's (centred, sharpened) distribution.
    perfect = teacher / TAU_T * TAU_S
    loss, stats = loss_fn(perfect, teacher, TAU_T)
    assert stats.kl.item() == pytest.approx(0.0, abs=1e-5)
    assert loss.item() == pytest.approx(stats.teacher_entropy.item(), rel=1e-5)
    # Any other prediction costs more (Gibbs' inequality).
    worse, _ = DenseNextFrameLoss(8, TAU_S)(perfect + 0.3 * torch.randn_like(perfect), teacher, TAU_T)
    assert worse.item() > loss.item()


def test_centre_is_an_ema_of_the_batch_mean():
    c = Centre(3, momentum=0.9)
    out = torch.tensor([[[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]]])
    c.update(out)
    assert torch.allclose(c.value, torch.tensor([[0.2, 0.2, 0.2]]))
    c.update(out)
    assert torch.allclose(c.value, torch.tensor([[0.38, 0.38, 0.38]]))


def test_centring_and_temperature_shape_the_teacher_distribution():
    z = torch.tensor([[4.0, 0.0, 0.0]])
    # Centring removes what every sample shares: centring by z itself gives uniform targets.
    assert torch.allclose(teacher_probs(z, z, TAU_T), torch.full((1, 3), 1 / 3))

    def entropy(p):
        return -(p * p.log()).sum().item()

    # A lower temperature sharpens.
    assert entropy(teacher_probs(z, torch.zeros(1, 3), 0.04)) < entropy(teacher_probs(z, torch.zeros(1, 3), 1.0))


def test_teacher_temperature_warms_up_linearly_then_stays():
    assert teacher_temperature(0, 10, 0.04, 0.07) == pytest.approx(0.04)
    assert teacher_temperature(5, 10, 0.04, 0.07) == pytest.approx(0.055)
    assert teacher_temperature(10, 10, 0.04, 0.07) == pytest.approx(0.07)
    assert teacher_temperature(99, 10, 0.04, 0.07) == pytest.approx(0.07)
    assert teacher_temperature(0, 0, 0.04, 0.07) == pytest.approx(0.07)


def test_global_loss_averages_every_local_view_of_every_future_frame():
    torch.manual_seed(1)
    s, t = torch.randn(2, 2, 3, 5), torch.randn(2, 2, 5)  # (B, K-1, L, C), (B, K-1, C)
    loss, _ = GlobalLoss(5, TAU_S)(s, t, TAU_T)
    p = torch.softmax(t / TAU_T, -1)
    terms = [
        -(p[b, j] * torch.log_softmax(s[b, j, ell] / TAU_S, -1)).sum()
        for b in range(2) for j in range(2) for ell in range(3)
    ]
    assert loss.item() == pytest.approx(torch.stack(terms).mean().item(), rel=1e-5)


def test_dino_loss_never_compares_a_view_with_itself():
    torch.manual_seed(2)
    student, teacher = torch.randn(3, 4, 6), torch.randn(3, 2, 6)
    loss, _ = MultiCropDINOLoss(6, TAU_S)(student, teacher, TAU_T)
    p = torch.softmax(teacher / TAU_T, -1)
    terms = [
        -(p[b, i] * torch.log_softmax(student[b, v] / TAU_S, -1)).sum()
        for b in range(3) for i in range(2) for v in range(4) if v != i
    ]
    assert loss.item() == pytest.approx(torch.stack(terms).mean().item(), rel=1e-5)


@pytest.fixture(scope="module")
def tiny_cfg():
    return build_config("cpu-tiny", overrides={"data.global_size": 32, "data.local_size": 16, "model.out_dim": 64})


def _frames_seen(backbone):
    seen = []
    backbone.patch_embed.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone()))
    return seen


def test_dense_pairs_are_next_frame_never_same_frame(tiny_cfg):
    torch.manual_seed(0)
    student = Student(tiny_cfg)
    teacher = Teacher(student)
    s_seen, t_seen = _frames_seen(student.backbone), _frames_seen(teacher.backbone)
    b, k = 2, 3
    # Frame j of clip i is filled with the constant 10*i + j: inputs identify themselves.
    globals_ = torch.stack([torch.full((3, 32, 32), 10.0 * i + j) for i in range(b) for j in range(k)]).unflatten(0, (b, k))
    locals_ = torch.zeros(b, k - 1, 2, 3, 16, 16)
    NextFrameDistillation(tiny_cfg)(student, teacher, globals_, locals_, TAU_T)
    student_frames = s_seen[0][:, 0, 0, 0].tolist()  # first call: global views
    teacher_frames = t_seen[0][:, 0, 0, 0].tolist()
    assert student_frames == [0.0, 1.0, 10.0, 11.0]  # x_t .. x_{t+(K-2)Δ}
    assert teacher_frames == [1.0, 2.0, 11.0, 12.0]  # x_{t+Δ} .. x_{t+(K-1)Δ}
    # Pair j: student frame j predicts teacher frame j+1 of the same clip.
    assert all(t == s + 1 for s, t in zip(student_frames, teacher_frames, strict=True))


def test_teacher_receives_no_gradient_and_follows_the_ema(tiny_cfg):
    torch.manual_seed(0)
    student = Student(tiny_cfg)
    teacher = Teacher(student)
    globals_ = torch.randn(2, 3, 3, 32, 32)
    locals_ = torch.randn(2, 2, 5, 3, 16, 16)
    loss, _ = NextFrameDistillation(tiny_cfg)(student, teacher, globals_, locals_, TAU_T)
    loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert student.predictor.blocks[0].attn.qkv.weight.grad is not None
    assert student.backbone.patch_embed.proj.weight.grad.abs().sum() > 0
    before = teacher.backbone.patch_embed.proj.weight.clone()
    with torch.no_grad():
        student.backbone.patch_embed.proj.weight.add_(1.0)
    update_teacher(student, teacher, momentum=0.75)
    expected = 0.75 * before + 0.25 * student.backbone.patch_embed.proj.weight
    assert torch.allclose(teacher.backbone.patch_embed.proj.weight, expected)
    assert not any(name.startswith("predictor") for name, _ in teacher.named_parameters())


@pytest.mark.parametrize("objective", ["dense", "global", "dino"])
def test_every_table1_objective_runs_and_backpropagates(tiny_cfg, objective):
    cfg = build_config("cpu-tiny", overrides={"data.global_size": 32, "data.local_size": 16, "model.out_dim": 64, "objective": objective})
    from vidistill.objective import build_objective

    student = Student(cfg)
    teacher = Teacher(student)
    k = 2 if objective == "dino" else 3
    loss, stats = build_objective(cfg)(student, teacher, torch.randn(2, k, 3, 32, 32), torch.randn(2, k - 1, 5, 3, 16, 16), TAU_T)
    loss.backward()
    assert torch.isfinite(loss)
    assert ("dense/loss" in stats) == (objective == "dense")
    assert (student.predictor is None) == (objective in ("global", "dino"))


def test_global_through_predictor_sends_the_local_cls_through_the_predictor():
    base = {"data.global_size": 32, "data.local_size": 16, "model.out_dim": 64, "objective": "global"}
    assert Student(build_config("cpu-tiny", overrides=base)).predictor is None  # docs/METHOD.md: off
    cfg = build_config("cpu-tiny", overrides={**base, "model.global_through_predictor": True})
    torch.manual_seed(0)
    student = Student(cfg)
    teacher = Teacher(student)
    locals_ = torch.randn(2, 2, 3, 3, 16, 16)
    loss, _ = NextFrameDistillation(cfg)(student, teacher, torch.randn(2, 3, 3, 32, 32), locals_, TAU_T)
    loss.backward()
    assert student.predictor.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    student.eval()  # no drop-path: the three paths below see the same backbone
    with torch.no_grad():
        views = locals_.flatten(0, 2)
        cls, patches = split_tokens(student.backbone, student.backbone.forward_features(views))
        direct = student.head(cls)
        routed = student(None, views, predict_dense=False).local_cls
        expected = student.head(student.predictor(torch.cat([cls[:, None], patches], dim=1))[:, 0])
    torch.testing.assert_close(routed, expected)
    assert not torch.allclose(routed, direct, atol=1e-3)
    with pytest.raises(ValueError, match="no predictor"):
        build_config("cpu-tiny", overrides={**base, "objective": "dino", "model.global_through_predictor": True})


def test_teacher_is_built_without_drop_path_and_stays_in_eval_mode(tiny_cfg):
    from timm.layers import DropPath

    student = Student(tiny_cfg)
    assert any(isinstance(m, DropPath) for m in student.modules())  # cpu-tiny: drop_path 0.1
    teacher = Teacher(student)
    assert not any(isinstance(m, DropPath) for m in teacher.modules())
    teacher.train()
    assert not teacher.training and not any(m.training for m in teacher.modules())
    for name, t in teacher.state_dict().items():
        torch.testing.assert_close(t, student.state_dict()[name])


def test_ema_pairs_parameters_by_name_not_by_position(tiny_cfg):
    torch.manual_seed(0)
    student = Student(tiny_cfg)
    teacher = Teacher(student)
    # Same modules registered in another order: positional pairing would mix head and backbone.
    teacher._modules = dict(reversed(list(teacher._modules.items())))
    assert next(iter(teacher.state_dict())).startswith("head.")
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    before = {n: p.clone() for n, p in teacher.named_parameters()}
    update_teacher(student, teacher, momentum=0.5)
    s = dict(student.named_parameters())
    for n, p in teacher.named_parameters():
        torch.testing.assert_close(p, 0.5 * before[n] + 0.5 * s[n], msg=n)
    # A teacher parameter without a student namesake is an error, not a silent mis-pairing.
    teacher.head.extra = torch.nn.Parameter(torch.zeros(3), requires_grad=False)
    with pytest.raises(RuntimeError, match="head.extra"):
        update_teacher(student, teacher, momentum=0.5)


def test_head_last_layer_keeps_nn_linear_default_init_like_dino():
    from vidistill.model import DINOHead

    torch.manual_seed(0)
    head = DINOHead(32, 4096, hidden_dim=64, bottleneck_dim=256)
    v = head.last_layer_v.detach()
    bound = 1 / math.sqrt(256)  # nn.Linear: kaiming_uniform(a=√5) = U(−1/√in, 1/√in)
    assert v.abs().max() <= bound
    assert v.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)


@pytest.mark.parametrize(("objective", "delta"), [("dino", 0), ("dino", 5)])
def test_every_table1_row_shows_the_student_as_many_views_as_the_method(objective, delta):
    """The DINO baselines' student sees 2 globals + (K−1)·L locals, the method's 2 + (K−1)·L."""
    import numpy as np

    from vidistill.data.views import Normalise, build_views, clip_frames
    from vidistill.objective import build_objective

    def student_views_per_clip(cfg) -> int:
        frames = [np.full((64, 64, 3), 40 * i, np.uint8) for i in range(clip_frames(cfg)[0])]
        sample = build_views(cfg, color=False)(frames, np.random.default_rng(0))
        student = Student(cfg)
        seen = _frames_seen(student.backbone)
        norm = Normalise(cfg.data.mean, cfg.data.std)
        build_objective(cfg)(student, Teacher(student), norm(sample.globals[None]), norm(sample.locals[None]), TAU_T)
        return sum(x.shape[0] for x in seen)

    base = {"data.global_size": 32, "data.local_size": 16, "model.out_dim": 64, "data.pre_crop": False}
    method = build_config("cpu-tiny", overrides=base)
    baseline = build_config("cpu-tiny", overrides={**base, "objective": objective, "data.time_aug_delta": delta})
    d = method.data
    assert student_views_per_clip(method) == (d.num_frames - 1) + (d.num_frames - 1) * d.num_local == 12
    assert student_views_per_clip(baseline) == 12


def test_weight_decay_groups_follow_dino(tiny_cfg):
    from vidistill.train.optimizer import param_groups

    student = Student(tiny_cfg)
    decay, no_decay = (set(map(id, g["params"])) for g in param_groups(student))
    b = student.backbone
    for p in (b.cls_token, b.pos_embed, b.blocks[0].attn.qkv.weight, student.head.last_layer_v):
        assert id(p) in decay
    for p in (b.blocks[0].attn.qkv.bias, b.norm.weight, b.blocks[0].norm1.bias):
        assert id(p) in no_decay
    assert id(student.head.last_layer_g) not in decay | no_decay  # frozen at 1 (norm_last_layer)


def test_teacher_ema_pairs_once_and_follows_in_place_loads(tiny_cfg):
    from vidistill.model import TeacherEMA

    torch.manual_seed(0)
    student = Student(tiny_cfg)
    teacher = Teacher(student)
    ema = TeacherEMA(student, teacher)  # paired before the loads below, as the trainer does
    other = Student(tiny_cfg)
    student.load_state_dict(other.state_dict())  # a resume: parameters change in place
    before = teacher.backbone.patch_embed.proj.weight.clone()
    ema(0.75)
    expected = 0.75 * before + 0.25 * other.backbone.patch_embed.proj.weight
    torch.testing.assert_close(teacher.backbone.patch_embed.proj.weight, expected)
