"""``vidistill`` command line: parses, dispatches to one function per command. No logic here.

Each command lives in the module that owns its idea and exposes ``add_arguments(parser)`` and
``run(args) -> int``; importing it lazily keeps ``vidistill --help`` fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from vidistill.errors import VidistillError

COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("vidistill.train.command", "train an encoder on video (self-distillation)"),
    "extract": ("vidistill.data.command", "pre-extract video frames to a JPEG cache"),
    "info": ("vidistill.data.info", "what a video, log or dataset holds: format, episodes, cameras, frames, codec"),
    "export": ("vidistill.export.command", "export the teacher backbone: safetensors, ONNX, TensorRT"),
    "eval": ("vidistill.eval.command", "evaluate frozen features: probe (mIoU), depth, knn, actions (a robot log's own actions)"),
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


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def cli_reference(width: int = 100) -> str:
    """Every command's real ``--help`` as one Markdown block (the README's CLI reference)."""
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)  # argparse wraps to the terminal width
    try:
        parts = [build_parser().format_help()]
        for name in COMMANDS:
            sub = _subparsers(build_parser(name))[name]
            parts.append(sub.format_help())
            parts += [p.format_help() for p in _subparsers(sub).values()]
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old
    return "```text\n" + "\n".join(p.rstrip() + "\n" for p in parts) + "```\n"


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
    if sys.argv[1:] == ["--reference"]:
        print(cli_reference(), end="")  # noqa: T201 - regenerates the README's CLI reference
        sys.exit(0)
    sys.exit(main())
