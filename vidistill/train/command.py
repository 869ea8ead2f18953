"""``vidistill train``: flags → Config overrides → ``train(cfg)``."""

from __future__ import annotations

import argparse

# CLI flag -> dotted config key. Everything else: --set KEY=VALUE.
FLAG_TO_KEY = {
    "objective": "objective",
    "output": "train.output",
    "max_steps": "train.max_steps",
    "epochs": "optim.epochs",
    "batch_size": "optim.batch_size",
    "lr": "optim.base_lr",
    "arch": "model.arch",
    "init": "model.init",
    "out_dim": "model.out_dim",
    "image_size": "data.global_size",
    "num_frames": "data.num_frames",
    "frame_stride": "data.frame_stride",
    "time_aug_delta": "data.time_aug_delta",
    "pre_crop": "data.pre_crop",
    "num_workers": "data.num_workers",
    "device": "train.device",
    "amp": "train.amp",
    "compile": "train.compile",
    "tensorboard": "train.tensorboard",
    "seed": "train.seed",
    "checkpoint_every": "train.checkpoint_every",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from vidistill.config import OBJECTIVES, available_presets

    p.add_argument("--video", action="append", default=[], metavar="PATH",
                   help="video file, frame folder, episode tree, LeRobot dataset or JPEG cache (repeatable)")
    p.add_argument("--camera", action="append", default=[], metavar="NAME",
                   help="robot-log camera to train on, by the log's name (repeatable; default: every RGB camera)")
    p.add_argument("--preset", choices=available_presets(),
                   help="cpu-tiny (ViT-Ti/16 96px, CPU), gpu (ViT-S/16 224px, one GPU), paper (4 GPUs); default: gpu if CUDA else cpu-tiny")
    p.add_argument("--config", metavar="YAML", help="config file overlaid on the preset")
    p.add_argument("--output", metavar="DIR", help="run folder; rerunning with the same folder resumes (default runs/<video>-<preset>)")
    p.add_argument("--objective", choices=OBJECTIVES, help="Table 1 rows: dense+global (the method), dense, global, dino (baseline)")
    p.add_argument("--pre-crop", action=argparse.BooleanOptionalAction, default=None, help="shared pre-crop of 5-20%% of the frame")
    p.add_argument("--time-aug-delta", type=int, help="dino baseline: split views across two frames this far apart")
    p.add_argument("--num-frames", type=int, help="K, frames per clip (default 3)")
    p.add_argument("--frame-stride", type=int, help="Δ, frames between clip frames (default 30)")
    p.add_argument("--max-steps", type=int, help="stop after this many optimiser steps (schedules span them)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="clips per process")
    p.add_argument("--lr", type=float, help="base lr (scaled by batch/256 unless optim.scale_lr=false)")
    p.add_argument("--arch", help="any timm ViT name, e.g. vit_small_patch16_224 (with --init: only for a bare .safetensors)")
    p.add_argument("--init", metavar="SPEC",
                   help="starting weights: a timm name with a pretrained tag (vit_small_patch14_reg4_dinov2.lvd142m), "
                        "a timm hub-layout folder (config.json + model.safetensors), a .safetensors with --arch, "
                        "or a vidistill run / checkpoint / export; the architecture comes from it")
    p.add_argument("--out-dim", type=int, help="projection head output dimension")
    p.add_argument("--image-size", type=int, help="global view size in pixels")
    p.add_argument("--num-workers", type=int)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"])
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile the student")
    p.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--seed", type=int)
    p.add_argument("--checkpoint-every", type=int, metavar="STEPS")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any config field, e.g. --set optim.teacher_temp=0.05 (repeatable)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def build_config_from_args(args: argparse.Namespace):
    from vidistill.config import build_config
    from vidistill.errors import VidistillError

    overrides: dict = {}
    for flag, key in FLAG_TO_KEY.items():
        value = getattr(args, flag, None)
        if value is not None:
            overrides[key] = value
    if args.video:
        overrides["data.videos"] = list(args.video)
    if args.camera:
        overrides["data.cameras"] = list(args.camera)
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise VidistillError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = value.strip()
    try:
        return build_config(args.preset, args.config, overrides)
    except (ValueError, FileNotFoundError) as e:
        raise VidistillError(str(e)) from None


def run(args: argparse.Namespace) -> int:
    import shlex

    import yaml

    from vidistill.errors import VidistillError

    cfg = build_config_from_args(args)
    if args.print_config:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False))  # noqa: T201 - CLI output
        return 0
    if not cfg.data.videos:
        raise VidistillError("no video given: use --video PATH (a file, a frame folder or a folder of episodes)")
    from vidistill.train.trainer import train

    run_dir = train(cfg)
    print(f"run folder: {run_dir}\nnext: vidistill export {shlex.quote(str(run_dir))} --onnx")  # noqa: T201 - CLI output
    return 0
