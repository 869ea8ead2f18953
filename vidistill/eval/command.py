"""``vidistill eval {probe,depth,knn} ENCODER --data DIR``: probes on frozen features;
``vidistill eval actions ENCODER... --data LOG``: encoders judged by a robot log's own actions
(:mod:`vidistill.eval.actions`).

ENCODER is a checkpoint file, a run folder (its teacher is evaluated) or an export folder,
loaded through the runtime with ``--backend`` (torch by default; ``--backend onnx`` probes
exactly the ONNX artefact a robot serves).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from vidistill.contract import as_hw
from vidistill.data.command import fps_value
from vidistill.errors import VidistillError

log = logging.getLogger(__name__)

LAYOUTS = """data layouts:
  probe, depth (ADE20K layout):  DIR/images/{training,validation}/NAME.jpg|png
                                 DIR/annotations/{training,validation}/NAME.png  (0 = ignore, 1..N classes)
                                 DIR/depth/{training,validation}/NAME.png        (uint16 mm, 0 = invalid)
  knn (image folder):            DIR/train/<class>/*.jpg   DIR/val/<class>/*.jpg
"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("encoder", metavar="CHECKPOINT_OR_EXPORT",
                   help="checkpoint.pt, a run folder, or an export folder (encoder.safetensors + config.json)")
    p.add_argument("--data", required=True, metavar="DIR", help="dataset folder (layouts: see `vidistill eval -h`)")
    p.add_argument("--image-size", default=None, metavar="S|HxW",
                   help="probe input size (default: the encoder's training or exported size; a multiple of "
                        "the patch; torch backend only)")
    p.add_argument("--backend", choices=("torch", "onnx", "tensorrt", "auto"), default="torch",
                   help="runtime backend: torch (default), onnx or tensorrt (the exported artefact itself), "
                        "auto (as a robot would pick)")
    p.add_argument("--output", "-o", default=None, metavar="FILE", help="write the JSON report here")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default: auto)")
    p.add_argument("--extract-batch-size", type=int, default=32, metavar="N",
                   help="images per forward pass when extracting features (default: 32)")


def _probe_options(p: argparse.ArgumentParser, lr: float) -> None:
    p.add_argument("--iters", type=int, default=1000, help="training iterations of the head (default: 1000)")
    p.add_argument("--batch-size", type=int, default=64, help="head training batch (default: 64)")
    p.add_argument("--lr", type=float, default=lr, help=f"AdamW learning rate, cosine decay (default: {lr:g})")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay (default: 1e-4)")
    p.add_argument("--no-batchnorm", action="store_true", help="no BatchNorm before the 1x1 conv")
    p.add_argument("--label-size", default=None, metavar="L|HxW",
                   help="training targets resized (nearest) to LxL or HxW (default: the input size); "
                        "validation is scored at the annotations' own resolution")
    p.add_argument("--seed", type=int, default=0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = LAYOUTS
    sub = parser.add_subparsers(dest="eval_task", metavar="TASK", required=True)

    p = sub.add_parser("probe", help="fast linear segmentation probe (the paper's Fast-LP): mIoU",
                       description="Frozen teacher backbone, BatchNorm + 1x1 conv on last-layer patch "
                                   "tokens, logits upsampled bilinearly, cross-entropy (label 0 ignored).",
                       epilog=LAYOUTS, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    _probe_options(p, lr=1e-3)
    p.add_argument("--num-classes", type=int, default=None, metavar="N",
                   help="number of classes (default: the largest label seen); labels above N are ignored")

    p = sub.add_parser("depth", help="linear log-depth probe: RMSE (m) and delta<1.25",
                       description="Frozen backbone, BatchNorm + 1x1 conv regressing log-depth per patch, "
                                   "upsampled bilinearly; loss on pixels with depth > 0.",
                       epilog=LAYOUTS, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    _probe_options(p, lr=1e-3)

    _actions_parser(sub)

    p = sub.add_parser("knn", help="DINO weighted k-NN on [CLS] features: top-1 accuracy",
                       epilog=LAYOUTS, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.add_argument("--k", type=int, default=20, help="neighbours (default: 20)")
    p.add_argument("--temperature", type=float, default=0.07, help="vote temperature (default: 0.07)")


ACTIONS_HELP = "which encoder predicts a robot log's own actions (or state) best: R², NMSE, k-NN error"
ACTIONS_DESCRIPTION = """\
Judge encoders by the robot's own log: a ridge readout from frozen features ([CLS] + mean patch
token, optionally a frame history) to the actions or state the log records beside its frames,
fitted on training episodes (penalty chosen on them only) and scored on held-out whole episodes.
Reports R² and normalised MSE per target dimension and on average, and the k-NN action error;
the first row is always 'random init' (the first encoder's architecture, random weights).

targets, by the log's own names (default: its action):
  LeRobot v2/v3:   action, observation.state, ... (numeric features of meta/info.json)
  robomimic HDF5:  actions, obs/robot0_eef_pos, ... (under data/demo_N)
  ALOHA HDF5:      action, observations/qpos, ...
Features are cached per encoder and log ($VIDISTILL_CACHE or ~/.cache/vidistill, action_features/)."""


def _actions_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("actions", help=ACTIONS_HELP, description=ACTIONS_DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("encoders", nargs="+", metavar="ENCODER",
                   help="export folder, run folder, checkpoint, .onnx, or timm hub folder (one row each)")
    p.add_argument("--data", required=True, metavar="LOG",
                   help="robot log with actions or state: LeRobot dataset, HDF5 file, or a folder of HDF5 episodes")
    p.add_argument("--target", action="append", default=[], metavar="NAME",
                   help="what to predict, by the log's name (repeatable; default: the log's action)")
    p.add_argument("--camera", default=None, metavar="NAME", help="the log's camera (default: its first)")
    p.add_argument("--history", type=int, default=1, metavar="N",
                   help="frames of features per sample: the current and the N-1 used before it (default: 1)")
    p.add_argument("--stride", type=int, default=1, metavar="N", help="use every N-th frame (default: 1)")
    p.add_argument("--holdout", type=float, default=0.2, metavar="FRACTION",
                   help="fraction of episodes held out, at least one (default: 0.2)")
    p.add_argument("--seed", type=int, default=0, help="episode split and random-init weights (default: 0)")
    p.add_argument("--json", default=None, metavar="PATH", help="write the report (scores per encoder and target, split)")
    p.add_argument("--backend", choices=("torch", "onnx", "tensorrt", "auto"), default="torch",
                   help="runtime backend for the encoders (default: torch)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default: auto)")
    p.add_argument("--fps", type=fps_value, default=0.0, metavar="FPS", help="frame rate of logs that store none (HDF5)")
    p.add_argument("--no-cache", action="store_true", help="encode again; do not read or write cached features")
    p.add_argument("--extract-batch-size", type=int, default=32, metavar="N",
                   help="images per forward pass (default: 32)")


def _run_actions(args: argparse.Namespace) -> int:
    from vidistill.eval.actions import ActionProbeSettings, action_probe, format_table, write_report

    for name in ("history", "stride", "extract_batch_size"):
        _positive("--" + name.replace("_", "-"), getattr(args, name))
    if not 0 < args.holdout < 1:
        raise VidistillError(f"--holdout must be a fraction between 0 and 1, got {args.holdout}")
    if args.json and Path(args.json).is_dir():
        raise VidistillError(f"--json {args.json}: is a folder; give a file path")
    settings = ActionProbeSettings(
        targets=tuple(args.target), camera=args.camera, history=args.history, holdout=args.holdout, seed=args.seed,
        stride=args.stride, batch_size=args.extract_batch_size, fps=args.fps, cache="" if args.no_cache else None,
    )
    report = action_probe(args.encoders, args.data, settings, backend=args.backend, device=args.device)
    if args.json:
        log.info("report written to %s", write_report(report, args.json))
    print(format_table(report))  # noqa: T201  (the CLI's result on stdout)
    return 0


def _positive(name: str, value: int | None) -> None:
    if value is not None and value <= 0:
        raise VidistillError(f"{name} must be positive, got {value}")


def run(args: argparse.Namespace) -> int:
    if args.eval_task == "actions":
        return _run_actions(args)
    from vidistill.eval.datasets import dense_split, image_folder
    from vidistill.eval.tasks import ProbeSettings, depth_probe, knn_eval, segmentation_probe
    from vidistill.runtime import load_encoder

    data = Path(args.data)
    if not data.is_dir():
        raise VidistillError(f"{data}: no such data folder" if not data.exists() else f"{data}: not a folder")
    for name in ("iters", "batch_size", "num_classes", "k", "extract_batch_size"):
        _positive("--" + name.replace("_", "-"), getattr(args, name, None))
    for name in ("image_size", "label_size"):
        value = getattr(args, name, None)
        if value is not None:
            try:
                setattr(args, name, as_hw(value))
            except ValueError as e:
                raise VidistillError(f"--{name.replace('_', '-')}: {e}") from None
            _positive(f"--{name.replace('_', '-')}", min(getattr(args, name)))
    # the data layout first: a wrong folder should not wait for a model to load
    if args.eval_task == "knn":
        image_folder(data)
    else:
        for split in ("training", "validation"):
            dense_split(data, split, "annotations" if args.eval_task == "probe" else "depth")
    encoder = load_encoder(args.encoder, backend=args.backend, device=args.device, image_size=args.image_size,
                           precision="fp32")  # probe numbers comparable across machines

    if args.eval_task == "knn":
        report = knn_eval(encoder, data, k=args.k, temperature=args.temperature,
                          extract_batch_size=args.extract_batch_size)
        lines = [f"top1 {report['top1']:.2f}"]
    else:
        settings = ProbeSettings(
            iters=args.iters, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
            batchnorm=not args.no_batchnorm, label_size=args.label_size, seed=args.seed,
            extract_batch_size=args.extract_batch_size,
        )
        if args.eval_task == "probe":
            report = segmentation_probe(encoder, data, settings, num_classes=args.num_classes)
            lines = [f"mIoU {report['miou']:.2f}", f"pixel_accuracy {report['pixel_accuracy']:.2f}"]
        else:
            report = depth_probe(encoder, data, settings)
            lines = [f"rmse {report['rmse']:.4f}", f"delta1 {report['delta1']:.2f}"]

    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        log.info("report written to %s", out)
    for line in lines:
        print(line)  # noqa: T201  (the CLI's result on stdout, for scripts)
    return 0
