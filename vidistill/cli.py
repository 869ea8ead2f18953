"""``vidistill`` command line: parses, dispatches to one function per command. No logic here.

Each command lives in the module that owns its idea and exposes ``add_arguments(parser)`` and
``run(args) -> int``; importing it lazily keeps ``vidistill --help`` fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from vidistill.errors import VidistillError

COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("vidistill.train.command", "train an encoder on video (self-distillation)"),
    "extract": ("vidistill.data.command", "pre-extract video frames to a JPEG cache"),
    "export": ("vidistill.export.command", "export the teacher backbone: safetensors, ONNX, TensorRT"),
    "eval": ("vidistill.eval.command", "evaluate frozen features: probe (mIoU), depth, knn"),
    "visualize": ("vidistill.visualize", "PCA pictures of patch features; loss curves of a run"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Only the chosen command's module is imported (``vidistill --help`` imports none)."""
    parser = argparse.ArgumentParser(
        prog="vidistill",
        description="Video self-distillation for single-image robot encoders.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(module_name).add_arguments(p)
        p.set_defaults(_module=module_name)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except VidistillError as e:
        print(f"vidistill {args.command}: error: {e}", file=sys.stderr)  # noqa: T201
        return e.exit_code
    except KeyboardInterrupt:
        print(f"vidistill {args.command}: interrupted", file=sys.stderr)  # noqa: T201
        return 130


if __name__ == "__main__":
    sys.exit(main())
