"""``vidistill export [RUN_OR_CHECKPOINT]``: the CLI face of ``pipeline.export_checkpoint``.

Importing this module is cheap (argparse only); torch, timm and onnx load inside ``run``.
"""

from __future__ import annotations

import argparse
import logging

from vidistill.contract import RESIZE_MODES

from .defaults import DEFAULT_MAX_BATCH, DEFAULT_OPSET, EXPORTERS, ORT_ATOL, PRECISIONS

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint", nargs="?", metavar="RUN_OR_CHECKPOINT",
        help="run folder or checkpoint file (default: the latest run under runs/); also any encoder the "
             "torch runtime loads: a timm hub folder (config.json + model.safetensors), an export folder, "
             "a .safetensors file with its config.json",
    )
    parser.add_argument("-o", "--output", metavar="DIR", help="output folder (default: <run folder>/export)")
    parser.add_argument(
        "--onnx", action=argparse.BooleanOptionalAction, default=True,
        help="write encoder.onnx, checked against PyTorch with ONNX Runtime (default: on)",
    )
    parser.add_argument(
        "--trt", "--tensorrt", dest="trt", action="store_true",
        help="also build a TensorRT engine (encoder.engine; needs tensorrt and an NVIDIA GPU)",
    )
    parser.add_argument("--precision", choices=PRECISIONS, default="fp16", help="TensorRT engine precision (default: fp16)")
    parser.add_argument(
        "--image-size", metavar="S|HxW",
        help="export at S x S or H x W pixels, e.g. 224x288 for a 4:3 camera at patch 16 (default: the "
             "training size; the position embedding is resampled once, fixed in the graph)",
    )
    parser.add_argument(
        "--resize", choices=RESIZE_MODES, default=None,
        help="how a frame of another shape becomes the input, recorded in the contract and applied by "
             "every backend: crop (default; centred, aspect kept), letterbox, stretch",
    )
    parser.add_argument(
        "--max-batch", type=int, default=DEFAULT_MAX_BATCH, metavar="N",
        help=f"largest batch of the TensorRT engine (default: {DEFAULT_MAX_BATCH})",
    )
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, metavar="N", help=f"ONNX opset (default: {DEFAULT_OPSET})")
    parser.add_argument(
        "--exporter", choices=EXPORTERS, default="auto",
        help="torch.onnx exporter: dynamo (needs onnxscript), legacy (TorchScript), auto = dynamo then legacy",
    )
    parser.add_argument(
        "--atol", type=float, default=ORT_ATOL, metavar="X",
        help=f"max |ONNX Runtime - PyTorch| accepted in fp32 (default: {ORT_ATOL:g})",
    )
    parser.add_argument(
        "--timing-cache", metavar="FILE",
        help="TensorRT timing cache, reused across builds (default: ~/.cache/vidistill/trt_timing.cache)",
    )


def run(args: argparse.Namespace) -> int:
    from .pipeline import ExportOptions, export_checkpoint

    result = export_checkpoint(
        ExportOptions(
            source=args.checkpoint,
            output=args.output,
            onnx=args.onnx,
            trt=args.trt,
            precision=args.precision,
            image_size=args.image_size,
            resize=args.resize,
            max_batch=args.max_batch,
            opset=args.opset,
            exporter=args.exporter,
            atol=args.atol,
            timing_cache=args.timing_cache,
        )
    )
    parity = result.manifest.get("parity", {})
    lines = [f"  {f.name:<20} {f.stat().st_size / 1e6:8.1f} MB" for f in result.files]
    if "onnxruntime" in parity:
        diffs = parity["onnxruntime"]["max_abs_diff"]
        lines.append("  ONNX Runtime vs PyTorch, max |diff|: " + ", ".join(f"batch {k}: {v:.2g}" for k, v in diffs.items()))
    if "torch" in parity:
        diffs = parity["torch"]["max_abs_diff"]
        lines.append("  torch backend vs PyTorch, max |diff|: " + ", ".join(f"batch {k}: {v:.2g}" for k, v in diffs.items()))
    if "tensorrt" in parity:
        lines.append(f"  TensorRT vs PyTorch, patch-token cosine: {parity['tensorrt']['cosine_patch_tokens']:.5f}")
    log.info("exported to %s:\n%s", result.output, "\n".join(lines))
    return 0
