"""Config resolution: dataclass defaults < preset < --config file < flags < --set, and the flags
that the dataclasses generate for ``vidistill train``."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from vidistill.cli import build_parser, main
from vidistill.config import (
    PRESET_DIR,
    Config,
    Objective,
    build_config,
    config_fields,
    config_from_dict,
    field_default,
    load_yaml,
)
from vidistill.errors import VidistillError
from vidistill.train.command import build_config_from_args


def cli_config(*argv: str) -> Config:
    return build_config_from_args(build_parser("train").parse_args(["train", *argv]))


@pytest.fixture(scope="module")
def tiny_init(tmp_path_factory) -> str:
    """A pretrained encoder as timm's save_for_hf writes it (tiny, random weights): --init reads it."""
    import timm
    from timm.models._hub import save_for_hf

    folder = tmp_path_factory.mktemp("init") / "vit"
    args = {"embed_dim": 64, "depth": 2, "num_heads": 2}
    save_for_hf(timm.create_model("vit_tiny_patch16_224", num_classes=0, **args), str(folder), model_args=args,
                safe_serialization=True)
    return str(folder)


def test_each_layer_overrides_the_one_before(tmp_path):
    preset = load_yaml(PRESET_DIR / "cpu-tiny.yaml")
    assert preset["optim"]["batch_size"] != field_default("optim.batch_size")
    cfg = build_config("cpu-tiny")
    assert cfg.optim.batch_size == preset["optim"]["batch_size"]  # preset > default
    assert cfg.optim.min_lr == field_default("optim.min_lr")  # untouched by the preset
    assert cfg.preset == "cpu-tiny"

    file = tmp_path / "mine.yaml"
    file.write_text("optim:\n  batch_size: 3\n  min_lr: 1.0e-5\nobjective: global\n")
    cfg = cli_config("--preset", "cpu-tiny", "--config", str(file))
    assert (cfg.optim.batch_size, cfg.optim.min_lr, cfg.objective) == (3, 1e-5, Objective.GLOBAL)  # file > preset
    cfg = cli_config("--preset", "cpu-tiny", "--config", str(file), "--batch-size", "5")
    assert cfg.optim.batch_size == 5 and cfg.optim.min_lr == 1e-5  # flag > file
    cfg = cli_config("--preset", "cpu-tiny", "--config", str(file), "--batch-size", "5", "--set", "optim.batch_size=6")
    assert cfg.optim.batch_size == 6  # --set is the last word


def test_readme_flags_map_to_their_fields(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("train:\n  seed: 7\n")
    cfg = cli_config(
        "--video", "a.mp4", "--video", "b/", "--preset", "gpu", "--output", "runs/x", "--max-steps", "50",
        "--batch-size", "16", "--objective", "dino", "--no-pre-crop", "--time-aug-delta", "5",
        "--frame-stride", "12", "--num-frames", "4", "--config", str(file), "--set", "optim.teacher_temp=0.05",
        "--global-size", "112", "--lr", "1e-3", "--out-dim", "1024", "--arch", "vit_tiny_patch16_224",
        "--device", "cpu", "--amp", "off", "--epochs", "2", "--checkpoint-every", "9", "--num-workers", "0",
    )
    assert cfg.data.videos == ["a.mp4", "b/"] and cfg.preset == "gpu"
    assert (cfg.train.output, cfg.train.max_steps, cfg.optim.batch_size) == ("runs/x", 50, 16)
    assert cfg.objective is Objective.DINO and cfg.data.pre_crop is False and cfg.data.time_aug_delta == 5
    assert (cfg.data.frame_stride, cfg.data.num_frames, cfg.train.seed) == (12, 4, 7)
    assert cfg.optim.teacher_temp == 0.05 and cfg.data.global_size == 112 and cfg.optim.base_lr == 1e-3
    assert (cfg.model.out_dim, cfg.model.arch, cfg.train.device, cfg.train.amp) == (1024, "vit_tiny_patch16_224", "cpu", "off")
    assert (cfg.optim.epochs, cfg.train.checkpoint_every, cfg.data.num_workers) == (2, 9, 0)
    assert cli_config("--preset", "cpu-tiny", "--pre-crop").data.pre_crop is True


def test_every_field_is_settable_with_set_and_round_trips(tiny_init):
    """New fields (other slices' too) get --set without any CLI code; values survive YAML."""
    for key, f in config_fields():
        if key in ("objective", "preset"):
            continue
        value = field_default(key)
        if isinstance(value, (list, tuple)):
            text = ",".join(str(v) for v in value)
        elif isinstance(value, dict):
            text = yaml.safe_dump(value, default_flow_style=True).strip()
        else:
            text = str(value)
        cfg = cli_config("--preset", "cpu-tiny", "--set", f"{key}={text}")
        got = cfg.get(key)
        if key == "train.output":  # unset: build_config settles the default run folder
            value = "runs/run-cpu-tiny"
        assert got == value or (isinstance(value, list) and not value and got == []), key
        assert f.metadata.get("help"), f"{key}: give it option(..., help=...)"
    cfg = cli_config("--preset", "cpu-tiny", "--set", "model.model_args={reg_tokens: 4}", "--set", f"model.init={tiny_init}")
    assert {"embed_dim": 64, "depth": 2, "reg_tokens": 4}.items() <= cfg.model.model_args.items()  # the init's + mine
    assert cfg.model.init == tiny_init and cfg.model.arch == "vit_tiny_patch16_224"


def test_print_config_is_the_resolved_config_and_loads_back(capsys):
    assert main(["train", "--preset", "cpu-tiny", "--objective", "dense", "--batch-size", "2", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["objective"] == "dense" and printed["optim"]["batch_size"] == 2
    again = config_from_dict(printed)
    assert dataclasses.asdict(again) == dataclasses.asdict(cli_config("--preset", "cpu-tiny", "--objective", "dense",
                                                                      "--batch-size", "2"))


def test_the_default_run_folder_is_settled_by_build_config(capsys):
    """train() used to fill in the run folder after build_config: --print-config showed none."""
    cfg = build_config("cpu-tiny", overrides={"data.videos": ["clips/kitchen.mp4"], "objective": "dense"})
    assert cfg.train.output == "runs/kitchen.mp4-cpu-tiny-dense"
    assert build_config("cpu-tiny", overrides={"train.output": "elsewhere"}).train.output == "elsewhere"
    assert main(["train", "--preset", "cpu-tiny", "--video", "clips/kitchen.mp4", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["train"]["output"] == "runs/kitchen.mp4-cpu-tiny"


def test_flag_help_comes_from_the_dataclass(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"clips per process (the paper: 4 GPUs x 64 = 256) (default: {field_default('optim.batch_size')})" in text
    assert "--pre-crop, --no-pre-crop" in text and "{dense+global,dense,global,dino}" in text


def test_cpu_presets_keep_colours_and_the_paper_keeps_dino_s():
    """Issue 17 (benchmarks/training_signals.md, "Colour augmentation"): at CPU scale DINO's colour
    jitter kept the targets uniform; the paper's scale keeps DINO's recipe."""
    assert build_config("cpu-tiny").data.colour_strength == 0
    assert build_config("adapt-cpu").data.colour_strength == 0
    assert build_config("paper").data.colour_strength == build_config("adapt").data.colour_strength == 1
    assert cli_config("--preset", "cpu-tiny", "--colour-strength", "1").data.colour_strength == 1


@pytest.mark.parametrize(("argv", "message"), [
    (["--set", "train.amp=fast"], "train.amp must be one of auto, bf16, fp16, off"),
    (["--set", "objective=dinov2"], "is not one of dense+global, dense, global, dino"),
    (["--set", "optim.nonsense=1"], "unknown key 'optim.nonsense'"),
    (["--set", "optim.batch_size=lots"], "bad value for 'optim.batch_size'"),
    (["--set", "model.model_args=[1, 2]"], "expected a mapping"),
    (["--set", "noequals"], "--set expects KEY=VALUE"),
    (["--colour-strength", "1.5"], "colour_strength must be in [0, 1]"),
])
def test_bad_values_name_the_key(argv, message):
    with pytest.raises(VidistillError, match=message.replace("(", r"\(").replace("+", r"\+").replace("[", r"\[")):
        cli_config("--preset", "cpu-tiny", *argv)


def test_a_config_file_is_checked_like_the_flags(tmp_path):
    file = tmp_path / "bad.yaml"
    file.write_text("train:\n  device: tpu\n")
    with pytest.raises(VidistillError, match=f"{file}: train.device must be one of auto, cpu, cuda"):
        cli_config("--preset", "cpu-tiny", "--config", str(file))
    with pytest.raises(VidistillError, match="config file not found"):
        cli_config("--preset", "cpu-tiny", "--config", str(tmp_path / "missing.yaml"))


def test_train_image_size_is_the_old_spelling_of_global_size_with_a_warning(caplog):
    """``train --global-size`` names the square global crop; ``--image-size`` still works one
    release (export, eval and visualize keep ``--image-size`` as the encoder input S|HxW)."""
    assert cli_config("--preset", "cpu-tiny", "--global-size", "112").data.global_size == 112
    with caplog.at_level("WARNING"):
        cfg = cli_config("--preset", "cpu-tiny", "--image-size", "80")
    assert cfg.data.global_size == 80 and "data.global_size" in cfg.user_keys
    assert "deprecated" in caplog.text and "--global-size 80" in caplog.text
    with pytest.raises(VidistillError, match="give one of them"):
        cli_config("--preset", "cpu-tiny", "--image-size", "80", "--global-size", "96")


def test_init_without_cuda_defaults_to_the_cpu_sized_adapt_recipe(caplog, tiny_init):
    """`vidistill train --init ...` on this CPU machine: the adapt recipe (head warm-up, layer
    decay, its temperatures) at the adaptation benchmark's CPU sizes, said in the log; a flag
    the user gives still wins."""
    import logging

    import torch

    assert not torch.cuda.is_available()  # the CPU machines this suite runs on
    with caplog.at_level(logging.INFO, logger="vidistill.config"):
        cfg = cli_config("--init", tiny_init)
    adapt = build_config("adapt")
    assert cfg.preset == "adapt-cpu"
    assert "preset adapt-cpu" in caplog.text and "without CUDA" in caplog.text
    assert (cfg.optim.batch_size, cfg.data.global_size, cfg.data.local_size, cfg.model.out_dim) == (8, 96, 48, 4096)
    assert cfg.optim.batch_size < adapt.optim.batch_size and cfg.data.global_size < adapt.data.global_size
    for key in ("adapt.head_warmup_fraction", "adapt.layer_decay", "adapt.backbone_lr_scale", "optim.base_lr",
                "optim.teacher_temp", "optim.momentum_teacher", "optim.scale_lr"):
        assert cfg.get(key) == adapt.get(key), key  # the recipe has one source: presets/adapt.yaml
    more = cli_config("--init", tiny_init, "--batch-size", "32", "--global-size", "224")
    assert (more.preset, more.optim.batch_size, more.data.global_size) == ("adapt-cpu", 32, 224)
    assert cli_config("--video", "x.mp4").preset == "cpu-tiny"  # no --init: unchanged


def test_a_preset_that_extends_itself_is_refused(tmp_path, monkeypatch):
    import vidistill.config as config

    monkeypatch.setattr(config, "PRESET_DIR", tmp_path)
    (tmp_path / "a.yaml").write_text("extends: b\noptim:\n  batch_size: 2\n")
    (tmp_path / "b.yaml").write_text("extends: a\n")
    with pytest.raises(ValueError, match="extends itself: a -> b -> a"):
        config.load_preset("a")
    (tmp_path / "b.yaml").write_text("optim:\n  batch_size: 5\n  epochs: 3\n")
    assert config.load_preset("a") == {"optim": {"batch_size": 2, "epochs": 3}}


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_training_device_follows_the_runtime_s_rule(device):
    """One device rule (issue 20, defect 10): training's --device cuda:N without CUDA was let through."""
    import torch

    from vidistill.train.distributed import process_device

    assert process_device("cpu") == process_device("auto") == torch.device("cpu")
    with pytest.raises(VidistillError, match="CUDA is not available"):
        process_device(device)
    with pytest.raises(VidistillError, match="'gpu0'"):
        process_device("gpu0")
