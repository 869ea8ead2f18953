"""Starting from a pretrained encoder (``--init``): every ViT family, resume, bad inputs, adaptation.

The "pretrained" encoders are tiny timm configs of the real DINOv2 (patch 14 + 4 registers, layer
scale) and DINOv3 (EVA-based, RoPE) architectures with random weights, written by timm's own
``save_for_hf`` in the hub layout: nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
import yaml
from timm.models._hub import save_for_hf

from vidistill.cli import main
from vidistill.config import build_config, config_from_dict
from vidistill.data import build_dataset
from vidistill.runtime import load_encoder
from vidistill.train.adaptation import FeatureDriftProbe, centred_cosine, linear_cka
from vidistill.train.distributed import DistributedContext
from vidistill.train.monitor import read_log
from vidistill.train.trainer import Trainer

TINY = {"embed_dim": 64, "depth": 2, "num_heads": 2}
# arch, native size of the saved init, training sizes (global, local): patch 14 and patch 16
FAMILIES = {
    "dinov2_reg4": ("vit_small_patch14_reg4_dinov2", 56, (56, 28)),
    "dinov3_rope": ("vit_small_patch16_dinov3", 64, (64, 32)),
}


def save_tiny(folder: Path, arch: str, img_size: int, seed: int = 0, **extra) -> Path:
    torch.manual_seed(seed)
    args = {**TINY, "img_size": img_size, **extra}
    model = timm.create_model(arch, num_classes=0, **args)
    save_for_hf(model, str(folder), model_args=args, safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def inits(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inits")
    return {name: save_tiny(root / name, arch, size) for name, (arch, size, _) in FAMILIES.items()}


def train_args(video: Path, out: Path, family: str, steps: int = 2, sizes: tuple[int, int] | None = None) -> list[str]:
    g, loc = sizes or FAMILIES[family][2]
    return [
        "train", "--video", str(video), "--preset", "cpu-tiny", "--output", str(out), "--max-steps", str(steps),
        "--batch-size", "2", "--out-dim", "64", "--num-workers", "0", "--global-size", str(g),
        "--frame-stride", "8", "--set", f"data.local_size={loc}", "--set", "data.num_local=2",
        "--set", "model.head_hidden_dim=64", "--set", "model.head_bottleneck_dim=32",
        "--set", "train.progress=false",
    ]


def tiny_config(video: Path, init: str | Path, family: str, out: Path | None = None, **overrides):
    g, loc = FAMILIES[family][2]
    base = {
        "data.videos": [str(video)], "model.init": str(init), "data.global_size": g, "data.local_size": loc,
        "data.num_local": 2, "data.frame_stride": 8, "data.num_workers": 0, "optim.batch_size": 2,
        "model.out_dim": 64, "model.head_hidden_dim": 64, "model.head_bottleneck_dim": 32,
        "train.progress": False, "train.output": str(out or ""),
    }
    return build_config("cpu-tiny", overrides={**base, **overrides})


@pytest.mark.parametrize("family", list(FAMILIES))
def test_step0_teacher_and_student_are_the_init(video_file, inits, family, tmp_path):
    arch, _, (size, _) = FAMILIES[family]
    cfg = tiny_config(video_file, inits[family], family, out=tmp_path / "run")
    trainer = Trainer(cfg, DistributedContext())
    assert (cfg.model.arch, cfg.model.model_args["embed_dim"]) == (arch, 64)  # from the init's config.json
    # The reference: timm alone reading the hub folder at the training size.
    ref = timm.create_model(f"local-dir:{inits[family]}", pretrained=True, num_classes=0, img_size=size).eval()
    ref_state = ref.state_dict()
    for name, t in trainer.teacher.backbone.state_dict().items():
        assert torch.equal(t, ref_state[name]), name
        assert torch.equal(trainer.student.backbone.state_dict()[name], ref_state[name]), name
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(trainer.teacher.backbone.forward_features(x), ref.forward_features(x), rtol=0, atol=0)
    assert not Path(cfg.train.output).exists()  # nothing is written before training starts


@pytest.mark.parametrize("family", list(FAMILIES))
def test_vit_family_trains_and_resumes_from_its_checkpoint_not_the_init(
    video_file, family, tmp_path, monkeypatch
):
    arch = FAMILIES[family][0]
    init = save_tiny(tmp_path / "init", arch, FAMILIES[family][1])
    out = tmp_path / "run"
    args = [*train_args(video_file, out, family, steps=3), "--checkpoint-every", "2", "--init", str(init)]
    # Interrupt the run after its checkpoint at step 2 (as Ctrl-C would).
    step_once = Trainer.step_lazily  # what the training loop calls for each step

    def interrupted_at_step_3(self, batch, step):
        if step == 2:
            raise KeyboardInterrupt
        return step_once(self, batch, step)

    monkeypatch.setattr(Trainer, "step_lazily", interrupted_at_step_3)
    assert main(args) == 130
    monkeypatch.setattr(Trainer, "step_lazily", step_once)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["model"]["arch"] == arch and saved["model"]["init"] == str(init)
    assert saved["model"]["model_args"]["embed_dim"] == 64 and "img_size" not in saved["model"]["model_args"]
    assert [r["step"] for r in read_log(out)] == [1, 2]
    # Resume: the init may be gone; the weights and the architecture come from the run.
    for f in init.iterdir():
        f.unlink()
    init.rmdir()
    assert main(args) == 0
    assert [r["step"] for r in read_log(out)] == [1, 2, 3]
    state = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert state["progress"]["step"] == 3
    assert state["contract"]["model_name"] == arch and state["contract"]["model_args"]["embed_dim"] == 64


def test_crop_sizes_snap_to_the_init_patch_size_and_the_log_says_so(video_file, inits, caplog):
    with caplog.at_level("INFO"):
        cfg = build_config("cpu-tiny", overrides={"data.videos": [str(video_file)], "model.init": str(inits["dinov2_reg4"])})
    assert (cfg.data.global_size, cfg.data.local_size) == (98, 42)  # cpu-tiny's 96/48 at patch 14
    assert "snapped to 98/42" in caplog.text
    # A size the user chose is not changed behind their back.
    with pytest.raises(Exception, match="not a multiple of the patch size 14.*98 or 112"):
        build_config("cpu-tiny", overrides={"model.init": str(inits["dinov2_reg4"]), "data.global_size": 100})


def test_rerunning_an_init_run_resumes_it_at_its_snapped_crop_sizes(video_file, tmp_path):
    """The same command again resumes the run: its config is the run's (the init is not read, it may
    be gone), with the crop sizes snapped as when it started, so the resume check passes."""
    from vidistill.train.checkpoint import write_random_init_checkpoint

    init = save_tiny(tmp_path / "init", "vit_small_patch14_reg4_dinov2", 56)
    over = {"data.videos": [str(video_file)], "model.init": str(init), "train.output": str(tmp_path / "run")}
    first = build_config("cpu-tiny", overrides=over)
    assert (first.data.global_size, first.data.local_size) == (98, 42)
    write_random_init_checkpoint(first, tmp_path / "run")
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(first.to_dict(), sort_keys=False))
    for f in init.iterdir():
        f.unlink()
    again = build_config("cpu-tiny", overrides=over)
    assert again.to_dict() == first.to_dict()


def test_init_from_a_vidistill_run_its_export_and_a_single_safetensors(video_file, inits, tmp_path):
    from safetensors.torch import load_file, save_file

    family = "dinov2_reg4"
    run = tmp_path / "run"
    assert main([*train_args(video_file, run, family, steps=1), "--init", str(inits[family])]) == 0
    teacher = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)["teacher"]
    cfg = tiny_config(video_file, run, family, out=tmp_path / "run2")
    trainer = Trainer(cfg, DistributedContext())
    assert cfg.model.arch == FAMILIES[family][0] and cfg.model.model_args["embed_dim"] == 64
    for name, t in trainer.teacher.backbone.state_dict().items():
        assert torch.equal(t, teacher[f"backbone.{name}"]), name
    # The run's export folder (config.json + encoder.safetensors with the contract).
    assert main(["export", str(run), "--output", str(tmp_path / "export"), "--no-onnx"]) == 0
    cfg = tiny_config(video_file, tmp_path / "export", family, out=tmp_path / "run4")
    trainer = Trainer(cfg, DistributedContext())
    assert cfg.model.arch == FAMILIES[family][0] and cfg.model.model_args["embed_dim"] == 64
    for name, t in trainer.teacher.backbone.state_dict().items():
        assert torch.equal(t, teacher[f"backbone.{name}"]), name
    # A bare .safetensors: the architecture comes from --arch and model_args.
    weights = tmp_path / "w.safetensors"
    save_file(load_file(str(inits[family] / "model.safetensors")), str(weights))
    cfg = tiny_config(video_file, weights, family, out=tmp_path / "run3", **{"model.arch": FAMILIES[family][0], "model.model_args": TINY})
    trainer = Trainer(cfg, DistributedContext())
    assert torch.equal(trainer.teacher.backbone.blocks[1].mlp.fc2.weight, load_file(str(weights))["blocks.1.mlp.fc2.weight"])


# ------------------------------------------------------------------------------ bad input
def _bad_init(kind: str, root: Path, inits: dict[str, Path]) -> tuple[str, str]:
    """(--init value, what the message must say)."""
    if kind == "missing_folder":
        return str(root / "nope"), "no such file or folder"
    if kind == "unknown_name":
        return "not_a_timm_model", "not a timm model name"
    if kind == "no_config":
        (root / "empty").mkdir()
        return str(root / "empty"), "folder without config.json"
    if kind == "mismatched_weights":
        folder = save_tiny(root / "wrong", "vit_small_patch14_reg4_dinov2", 56, embed_dim=32)
        cfg = json.loads((folder / "config.json").read_text())
        cfg["model_args"]["embed_dim"] = 64  # the config names another width than the weights have
        (folder / "config.json").write_text(json.dumps(cfg))
        return str(folder), r"do not match vit_small_patch14_reg4_dinov2.*cls_token: init \(1, 1, 32\) vs"
    if kind == "mistyped_tag":
        return "vit_small_patch14_dinov2.typo", r"no pretrained tag 'typo' for vit_small_patch14_dinov2.*knows: .*vit_small_patch14_dinov2\.lvd142m"
    if kind == "not_a_vit":
        return "resnet18.a1_in1k", "not a ViT"
    if kind == "patch_does_not_divide":
        return str(inits["dinov2_reg4"]), "not a multiple of the patch size 14"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind", ["missing_folder", "unknown_name", "mistyped_tag", "no_config", "mismatched_weights", "not_a_vit", "patch_does_not_divide"]
)
def test_bad_init_is_a_clear_error_and_writes_nothing(kind, video_file, inits, tmp_path, capsys):
    init, message = _bad_init(kind, tmp_path, inits)
    out = tmp_path / "run"
    args = [*train_args(video_file, out, "dinov2_reg4"), "--init", init]
    if kind == "patch_does_not_divide":
        args += ["--global-size", "64"]  # 64 px is not a multiple of 14
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("vidistill train: error: --init") or "data.global_size" in err
    assert "Traceback" not in err
    import re

    assert re.search(message, err), err
    assert not out.exists()


def test_hub_name_offline_without_cache_says_how_to_pass_a_folder(video_file, tmp_path):
    # huggingface_hub reads HF_HUB_OFFLINE at import: a fresh process with an empty cache.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(tmp_path / "hf" / "hub")}
    env.pop("HF_TOKEN", None)
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "vidistill", *train_args(video_file, out, "dinov2_reg4"),
         "--init", "vit_small_patch14_reg4_dinov2.lvd142m"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert "HF_HUB_OFFLINE=1" in proc.stderr and "--init weights/" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


# ------------------------------------------------------------------------------ adaptation
def test_layer_decay_param_groups_scale_the_lr_per_backbone_layer(video_file, inits, tmp_path):
    from vidistill.train.adaptation import backbone_layer_ids
    from vidistill.train.optimizer import set_hyperparameters

    cfg = tiny_config(video_file, inits["dinov2_reg4"], "dinov2_reg4", out=tmp_path / "run",
                      **{"adapt.layer_decay": 0.5, "adapt.backbone_lr_scale": 0.4})
    trainer = Trainer(cfg, DistributedContext())
    set_hyperparameters(trainer.optimizer, 1e-3, 0.04)
    lr_of = {id(p): g["lr"] for g in trainer.optimizer.param_groups for p in g["params"]}
    wd_of = {id(p): g["weight_decay"] for g in trainer.optimizer.param_groups for p in g["params"]}
    s = trainer.student
    layers = backbone_layer_ids(s.backbone)[1]
    assert layers == 3  # embeddings, block 0, block 1 (+ final norm): timm's own grouping
    assert lr_of[id(s.backbone.patch_embed.proj.weight)] == pytest.approx(1e-3 * 0.4 * 0.5**2)
    assert lr_of[id(s.backbone.reg_token)] == pytest.approx(1e-3 * 0.4 * 0.5**2)
    assert lr_of[id(s.backbone.blocks[0].attn.qkv.weight)] == pytest.approx(1e-3 * 0.4 * 0.5)
    assert lr_of[id(s.backbone.blocks[1].mlp.fc1.weight)] == pytest.approx(1e-3 * 0.4)
    assert lr_of[id(s.backbone.norm.weight)] == pytest.approx(1e-3 * 0.4)
    assert lr_of[id(s.head.mlp[0].weight)] == lr_of[id(s.predictor.mlp[0].weight)] == pytest.approx(1e-3)
    assert wd_of[id(s.backbone.blocks[0].attn.qkv.weight)] == 0.04 and wd_of[id(s.backbone.blocks[0].norm1.weight)] == 0
    assert sum(len(g["params"]) for g in trainer.optimizer.param_groups) == sum(
        1 for p in s.parameters() if p.requires_grad
    )


def test_head_warmup_freezes_the_backbone_then_unfreezes_it(video_file, inits, tmp_path):
    cfg = tiny_config(video_file, inits["dinov3_rope"], "dinov3_rope", out=tmp_path / "run",
                      **{"adapt.head_warmup_fraction": 0.2, "train.max_steps": 10, "optim.warmup_epochs": 0})
    trainer = Trainer(cfg, DistributedContext())
    sch = trainer.schedules
    assert sch.backbone_frozen_steps == 2
    assert [sch.backbone_lr_factor(s) for s in range(5)] == [0.0, 0.0, 0.5, 1.0, 1.0]
    backbone = {k: v.clone() for k, v in trainer.student.backbone.state_dict().items()}
    head = trainer.student.head.mlp[0].weight.detach().clone()
    batches = iter(trainer.loader)
    trainer.student.train()
    for step in range(2):
        trainer.train_step(next(batches), step)
        for k, v in trainer.student.backbone.state_dict().items():
            assert torch.equal(v, backbone[k]), f"step {step}: {k} moved during the head warm-up"
    assert not torch.equal(trainer.student.head.mlp[0].weight, head)  # the head trains meanwhile
    trainer.train_step(next(batches), 2)
    lrs = {g["backbone"]: g["lr"] / g["lr_scale"] for g in trainer.optimizer.param_groups}
    assert lrs[True] == pytest.approx(0.5 * lrs[False])  # the backbone's ramp: half-way at step 2
    moved = [k for k, v in trainer.student.backbone.state_dict().items() if not torch.equal(v, backbone[k])]
    assert "blocks.0.attn.qkv.weight" in moved and "patch_embed.proj.weight" in moved


def test_gram_loss_is_zero_at_init_and_grows_as_the_student_moves():
    from vidistill.model.backbone import build_backbone, split_tokens
    from vidistill.objective.gram import gram_loss
    from vidistill.train.adaptation import GramAnchor

    cfg = build_config("cpu-tiny", overrides={"model.arch": "vit_small_patch16_dinov3", "model.model_args": TINY,
                                              "data.global_size": 64, "data.local_size": 32})
    torch.manual_seed(0)
    student = build_backbone(cfg.model.arch, 64, 0.0, cfg.model.model_args).eval()
    anchor = GramAnchor(cfg, student)
    views = torch.randn(3, 3, 64, 64)

    def loss_now() -> float:
        _, patches = split_tokens(student, student.forward_features(views))
        return anchor.loss(views, patches).item()

    assert loss_now() == 0.0
    losses = []
    for _ in range(3):
        with torch.no_grad():
            for p in student.blocks.parameters():
                p.add_(0.05 * torch.randn_like(p))
        losses.append(loss_now())
    assert 0 < losses[0] < losses[1] < losses[2]
    assert not any(p.requires_grad for p in anchor.parameters())
    # Relations, not features: a rotation of the feature space costs nothing.
    x = torch.randn(2, 16, 64)
    q, _ = torch.linalg.qr(torch.randn(64, 64))
    assert gram_loss(x @ q, x).item() < 1e-10


@pytest.mark.parametrize("objective", ["dense+global", "dino"])
def test_the_objective_hands_the_gram_anchor_the_student_s_own_patch_tokens(objective):
    """The anchor's term is the Gram loss of the patch tokens the student made of the global views
    it encoded for the objective (no second student forward, no wrapped student)."""
    import copy

    from vidistill.model import Student, Teacher
    from vidistill.model.backbone import split_tokens
    from vidistill.objective import build_objective
    from vidistill.train.adaptation import GramAnchor, with_gram_anchor

    cfg = build_config("cpu-tiny", overrides={
        "objective": objective, "data.global_size": 32, "data.local_size": 16, "data.num_local": 2,
        "model.out_dim": 64, "model.drop_path": 0.0, "adapt.gram_weight": 2.0})
    torch.manual_seed(0)
    student = Student(cfg)
    teacher = Teacher(student)
    with torch.no_grad():  # the student has moved from the init the anchor froze
        for p in student.backbone.blocks.parameters():
            p.add_(0.05 * torch.randn_like(p))
    anchored = with_gram_anchor(build_objective(cfg), cfg, teacher.backbone)
    k = 2 if objective == "dino" else cfg.data.num_frames  # DINO: 2 globals of one frame, with all the locals
    globals_ = torch.randn(2, k, 3, 32, 32)
    locals_ = torch.randn(2, cfg.data.num_frames - 1, cfg.data.num_local, 3, 16, 16)
    calls = []

    def counted_student(*args, **kwargs):
        calls.append(1)
        return student(*args, **kwargs)

    plain, _ = copy.deepcopy(anchored.objective)(student, teacher, globals_, locals_, 0.04)  # its centres as they are
    loss, stats = anchored(counted_student, teacher, globals_, locals_, 0.04)
    seen = globals_.flatten(0, 1) if objective == "dino" else globals_[:, :-1].flatten(0, 1)
    with torch.no_grad():
        _, patches = split_tokens(student.backbone, student.backbone.forward_features(seen))
        expected = GramAnchor(cfg, teacher.backbone).loss(seen, patches)
    assert len(calls) == 1 and expected > 1e-6
    assert stats["gram/loss"].item() == pytest.approx(expected.item(), rel=1e-4)
    assert (loss - plain).item() == pytest.approx(2.0 * expected.item(), rel=1e-3)


def test_feature_drift_measures_move_where_an_uncentred_cosine_does_not():
    """Linear CKA of patch features: 1 for the same encoder, clearly below 1 for a perturbed one,
    blind to a global scale (and a rotation) of the feature space. Tokens that share a large
    common direction keep an uncentred cosine near 1 however they move; CKA and the centred
    cosine see the move."""
    torch.manual_seed(0)
    encoder = timm.create_model("vit_small_patch16_224", num_classes=0, img_size=64, **TINY).eval()
    pixels = torch.randn(4, 3, 64, 64)
    probe = FeatureDriftProbe.at_init(encoder, pixels)
    same = probe.measure(encoder)
    assert all(v == pytest.approx(1.0, abs=1e-9) for v in same.values())
    with torch.no_grad():
        for p in encoder.blocks.parameters():
            p.add_(0.2 * torch.randn_like(p))
    moved = probe.measure(encoder)
    assert moved["drift/patch_cka"] < 0.95 and moved["drift/patch_cos"] < 0.95
    _, patches = FeatureDriftProbe.features(encoder, pixels)
    q, _ = torch.linalg.qr(torch.randn(64, 64, dtype=torch.float64))
    assert linear_cka(patches * 7.0, probe.init_patches) == pytest.approx(moved["drift/patch_cka"], rel=1e-9)
    assert linear_cka((patches.double() @ q).float(), probe.init_patches) == pytest.approx(
        moved["drift/patch_cka"], rel=1e-5)
    # A shared direction 10x the spread: the uncentred cosine reads ~1, the centred measures do not.
    offset = 10 * patches.reshape(-1, 64).norm(dim=-1).mean() * F.normalize(torch.randn(64), dim=0)
    a, b = probe.init_patches + offset, patches + offset
    assert F.cosine_similarity(a, b, dim=-1).mean() > 0.99
    assert linear_cka(b, a) == pytest.approx(moved["drift/patch_cka"], rel=1e-5)
    assert centred_cosine(b, a) == pytest.approx(moved["drift/patch_cos"], rel=1e-5)


def test_gram_anchor_and_drift_probe_in_a_run(video_file, inits, tmp_path):
    family = "dinov2_reg4"
    out = tmp_path / "run"
    args = [*train_args(video_file, out, family, steps=3), "--init", str(inits[family]), "--gram-weight", "1",
            "--set", "adapt.drift_every=1", "--set", "adapt.head_warmup_fraction=0.34"]  # 1 of 3 steps frozen
    assert main(args) == 0
    log = read_log(out)
    keys = ("drift/patch_cka", "drift/patch_cos", "drift/cls_cos")
    assert all("gram/loss" in r and all(k in r for k in keys) and "collapsed" in r for r in log)
    # Head warm-up: the teacher is still exactly the init at step 1, then it moves.
    assert all(log[0][k] == pytest.approx(1.0, abs=1e-9) for k in keys)
    assert log[-1]["drift/patch_cka"] < 1.0 - 1e-9 and log[-1]["drift/patch_cos"] < 1.0 - 1e-9  # lr ramp: ~1e-8
    state = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert state["drift_probe"]["init_patches"].shape == (8, 16, 64)  # 8 frames, 4x4 patches at 56 px
    # The probe frames are what the run's encoder gets from a camera frame: the 128x96 video
    # centre-cropped by the contract (not stretched), by the runtime's own preprocessing.
    dataset = build_dataset(config_from_dict(state["config"]))
    ids = np.linspace(0, len(dataset) - 1, 8).round().astype(int)
    frames = [dataset.frames(int(c))[0] for c in ids]
    expected = load_encoder(out, backend="torch", device="cpu").preprocess(frames)
    assert torch.equal(state["drift_probe"]["pixels"], torch.from_numpy(expected))
    # The frozen init is in the objective's state (a resume needs no init) and is the init.
    init = timm.create_model(f"local-dir:{inits[family]}", pretrained=True, num_classes=0, img_size=56).state_dict()
    anchor = {k.removeprefix("gram.anchor."): v for k, v in state["objective"].items() if k.startswith("gram.anchor.")}
    assert anchor.keys() == init.keys() and all(torch.equal(anchor[k], init[k]) for k in init)
    # Without the weight, no frozen copy is built.
    cfg = tiny_config(video_file, inits[family], family, out=tmp_path / "plain")
    assert not any(k.startswith("gram.") for k in Trainer(cfg, DistributedContext()).objective.state_dict())


@pytest.mark.slow
def test_hub_name_loads_offline_from_the_hugging_face_cache(video_file, tmp_path):
    """A cached timm name trains with the hub switched off: the cache is filled here by hand in
    huggingface_hub's layout with random full-size weights (nothing is downloaded)."""
    from safetensors.torch import save_file

    name, repo = "vit_small_patch16_dinov3.lvd1689m", "models--timm--vit_small_patch16_dinov3.lvd1689m"
    torch.manual_seed(0)
    weights = timm.create_model("vit_small_patch16_dinov3", num_classes=0).state_dict()
    snapshot = tmp_path / "hf" / "hub" / repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    save_file(weights, str(snapshot / "model.safetensors"))
    (tmp_path / "hf" / "hub" / repo / "refs").mkdir()
    (tmp_path / "hf" / "hub" / repo / "refs" / "main").write_text("0" * 40)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(tmp_path / "hf" / "hub")}
    out = tmp_path / "run"
    args = train_args(video_file, out, "dinov3_rope", steps=1, sizes=(32, 16))  # ViT-S: keep the grid 2x2
    proc = subprocess.run([sys.executable, "-m", "vidistill", *args, "--init", name],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["model"]["arch"] == "vit_small_patch16_dinov3" and saved["model"]["init"] == name
    teacher = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)["teacher"]
    # One step at momentum 0.996 (cpu-tiny) later the teacher is still (almost exactly) the cached weights.
    torch.testing.assert_close(teacher["backbone.patch_embed.proj.weight"], weights["patch_embed.proj.weight"],
                               rtol=0, atol=1e-3)


def test_init_saved_at_a_non_square_size_is_resampled_from_its_own_grid(tmp_path):
    """A hub folder saved at 28x42 (a 2x3 grid, e.g. an export at a camera's aspect): its 6-token
    position embedding is resampled from 2x3 to the 4x4 training grid, not refused as a non-square."""
    from timm.layers import resample_abs_pos_embed

    from vidistill.model.pretrained import init_state_dict, resolve_init

    folder = save_tiny(tmp_path / "wide", "vit_small_patch14_reg4_dinov2", (28, 42))
    saved = timm.create_model("local-dir:" + str(folder), pretrained=True).pos_embed.detach()
    assert saved.shape == (1, 6, 64)
    state = init_state_dict(resolve_init(str(folder)), 56)
    expected = resample_abs_pos_embed(saved, new_size=[4, 4], old_size=[2, 3], num_prefix_tokens=0)
    torch.testing.assert_close(state["pos_embed"], expected)


# ------------------------------------------------------------------------------ defects (issue 20)
def test_bare_safetensors_without_arch_is_refused_not_built_as_the_preset_arch(video_file, inits, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    weights = tmp_path / "w.safetensors"
    save_file(load_file(str(inits["dinov2_reg4"] / "model.safetensors")), str(weights))
    out = tmp_path / "run"
    assert main([*train_args(video_file, out, "dinov2_reg4"), "--init", str(weights)]) == 2
    err = capsys.readouterr().err
    assert "needs --arch" in err and "Traceback" not in err, err
    assert not out.exists()
    # The preset's own arch, named by the user, is taken as theirs (and here does not fit the file).
    arch = build_config("cpu-tiny").model.arch
    assert main([*train_args(video_file, out, "dinov2_reg4"), "--init", str(weights), "--arch", arch]) == 2
    err = capsys.readouterr().err
    assert "needs --arch" not in err and f"patch size 16 of {arch}" in err, err


def test_init_of_another_patch_size_is_an_error_a_grid_resample_is_not(tmp_path):
    """A patch-8 file into a patch-16 model: refused, naming both kernels (timm's filter would resize
    them). The same architecture saved at 32 px, used at 64 px: its 2x2 position embedding is resampled."""
    from safetensors.torch import save_file
    from timm.layers import resample_abs_pos_embed

    from vidistill.model.pretrained import InitError, init_state_dict, resolve_init

    p8 = timm.create_model("vit_small_patch8_224", num_classes=0, img_size=32, **TINY)
    save_file(p8.state_dict(), str(tmp_path / "p8.safetensors"))
    with pytest.raises(InitError, match=r"\(64, 3, 8, 8\).*vit_small_patch16_224 \(64, 3, 16, 16\)"):
        init_state_dict(resolve_init(str(tmp_path / "p8.safetensors"), "vit_small_patch16_224", TINY), 64)
    p16 = timm.create_model("vit_small_patch16_224", num_classes=0, img_size=32, **TINY)
    save_file(p16.state_dict(), str(tmp_path / "p16.safetensors"))
    state = init_state_dict(resolve_init(str(tmp_path / "p16.safetensors"), "vit_small_patch16_224", TINY), 64)
    expected = resample_abs_pos_embed(p16.pos_embed.detach(), new_size=[4, 4], old_size=[2, 2], num_prefix_tokens=1)
    torch.testing.assert_close(state["pos_embed"], expected)
    assert torch.equal(state["patch_embed.proj.weight"], p16.patch_embed.proj.weight)


def test_init_with_as_many_tokens_on_another_grid_is_resampled_not_scrambled(tmp_path):
    """A 9x16 grid (an export at a camera's 126x224) used at 168x168 (12x12): 144 tokens both, yet
    the position embedding must be resampled from 9x16, not loaded row by row onto 12x12."""
    from timm.layers import resample_abs_pos_embed

    from vidistill.model.pretrained import init_state_dict, resolve_init

    folder = save_tiny(tmp_path / "wide", "vit_small_patch14_reg4_dinov2", (126, 224))
    saved = timm.create_model("local-dir:" + str(folder), pretrained=True).pos_embed.detach()
    assert saved.shape == (1, 144, 64)
    state = init_state_dict(resolve_init(str(folder)), 168)
    expected = resample_abs_pos_embed(saved, new_size=[12, 12], old_size=[9, 16], num_prefix_tokens=0)
    torch.testing.assert_close(state["pos_embed"], expected)
    assert not torch.equal(state["pos_embed"], saved)


@pytest.mark.parametrize("arch", ["vit_small_patch14_reg4_dinov2", "vit_small_patch16_dinov3"])
def test_register_tokens_decay_with_the_embeddings(arch):
    """Layer decay: the register tokens are embeddings (layer 0, the lowest lr), with whatever timm
    is installed (timm's group_matcher put reg_token in the last layer before 1.0.28)."""
    from torch import nn

    from vidistill.config import AdaptConfig
    from vidistill.train.adaptation import adaptation_param_groups

    model = nn.Module()
    model.backbone = timm.create_model(arch, num_classes=0, **TINY)
    # The grouping timm < 1.0.28 gives (reg_token not in the stem), whatever timm is installed here.
    model.backbone.group_matcher = lambda coarse=False: dict(
        stem=r"^cls_token|pos_embed|patch_embed", blocks=[(r"^blocks\.(\d+)", None), (r"^norm", (99999,))])
    groups = adaptation_param_groups(model, AdaptConfig(layer_decay=0.5, backbone_lr_scale=0.4))
    scale_of = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    stem = scale_of[id(model.backbone.patch_embed.proj.weight)]
    assert stem == pytest.approx(0.4 * 0.5**2)
    assert scale_of[id(model.backbone.reg_token)] == stem == scale_of[id(model.backbone.cls_token)]
    assert scale_of[id(model.backbone.norm.weight)] == pytest.approx(0.4)
