"""``vidistill train``: flags → Config overrides → ``train(cfg)``.

The flags are derived from the config dataclasses: a field declared with ``option(flag=...)``
gets that flag, its help text and its type; every field is also reachable with
``--set section.key=value``. Nothing here repeats a default.
"""

from __future__ import annotations

import argparse
import enum
import logging
import typing

log = logging.getLogger(__name__)

EPILOG = (
    "Defaults shown are the dataclass defaults (the paper's run); a preset, then --config, then "
    "the flags and --set override them in that order. --print-config shows the resolved values; "
    "every config field can be given with --set (e.g. --set optim.teacher_temp=0.05)."
)


def _flag_kwargs(key: str, f) -> dict:
    from vidistill.config import field_default, field_type

    tp, default = field_type(key), field_default(key)
    help_text = f.metadata.get("help", "").replace("%", "%%")
    kwargs: dict = {"dest": key, "default": None, "metavar": f.metadata["flag"].upper().replace("-", "_")}
    if tp is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
        del kwargs["metavar"]
        help_text += f" (default: {'on' if default else 'off'})"
    else:
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            kwargs["choices"] = [m.value for m in tp]
            del kwargs["metavar"]
        elif f.metadata.get("choices"):
            kwargs["choices"] = list(f.metadata["choices"])
            del kwargs["metavar"]
        elif tp in (int, float):
            kwargs["type"] = tp
        elif typing.get_origin(tp) is not None or tp is not str:
            raise TypeError(f"{key}: a flag needs a scalar field, not {tp}")  # pragma: no cover
        shown = default.value if isinstance(default, enum.Enum) else default
        if shown != "":  # an empty default is explained by the help text itself
            help_text += f" (default: {shown})"
    kwargs["help"] = help_text
    return kwargs


def add_arguments(p: argparse.ArgumentParser) -> None:
    from vidistill.config import available_presets, config_fields

    p.epilog = EPILOG
    p.add_argument("--video", action="append", default=[], metavar="PATH",
                   help="video file, frame folder, episode tree, LeRobot dataset or JPEG cache (repeatable)")
    p.add_argument("--camera", action="append", default=[], metavar="NAME",
                   help="robot-log camera to train on, by the log's name (repeatable; default: every RGB camera)")
    p.add_argument("--preset", choices=available_presets(),
                   help="cpu-tiny (ViT-Ti/16 96px, CPU), gpu (ViT-S/16 224px, one GPU), paper (4 GPUs), "
                        "adapt / adapt-cpu (--init: the adaptation recipe at GPU / CPU sizes); default: "
                        "gpu if CUDA else cpu-tiny, and with --init adapt if CUDA else adapt-cpu")
    p.add_argument("--config", metavar="YAML", help="config file overlaid on the preset")
    for key, f in config_fields():
        if f.metadata.get("flag"):
            p.add_argument(f"--{f.metadata['flag']}", **_flag_kwargs(key, f))
    p.add_argument("--image-size", dest="deprecated_image_size", type=int, metavar="S",
                   help="deprecated spelling of --global-size (kept for one release)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any config field, e.g. --set optim.teacher_temp=0.05 (repeatable)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def overrides_from_args(args: argparse.Namespace) -> dict:
    """Dotted-key overrides in the order they apply: flags, then ``--set`` (the last word)."""
    from vidistill.config import config_fields, parse_set
    from vidistill.errors import VidistillError

    overrides: dict = {}
    for key, f in config_fields():
        value = getattr(args, key, None) if f.metadata.get("flag") else None
        if value is not None:
            overrides[key] = value
    if getattr(args, "deprecated_image_size", None) is not None:
        if overrides.get("data.global_size", args.deprecated_image_size) != args.deprecated_image_size:
            raise VidistillError("--image-size is the old spelling of --global-size: give one of them")
        log.warning("train --image-size is deprecated and will be removed: use --global-size %d (the square "
                    "global crop; --image-size stays the encoder input of export, eval and visualize)",
                    args.deprecated_image_size)
        overrides["data.global_size"] = args.deprecated_image_size
    if args.video:
        overrides["data.videos"] = list(args.video)
    if args.camera:
        overrides["data.cameras"] = list(args.camera)
    try:
        overrides.update(parse_set(args.set))
    except ValueError as e:
        raise VidistillError(str(e)) from None
    return overrides


def build_config_from_args(args: argparse.Namespace):
    from vidistill.config import build_config
    from vidistill.errors import VidistillError

    try:
        return build_config(args.preset, args.config, overrides_from_args(args))
    except (ValueError, FileNotFoundError) as e:
        raise VidistillError(str(e)) from None


def run(args: argparse.Namespace) -> int:
    import shlex

    import yaml

    from vidistill.errors import VidistillError
    from vidistill.train.cores import prefer_passive_waiting

    prefer_passive_waiting()  # first: before anything loads torch (vidistill.train.cores says why)
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
