"""``encoder.onnx`` → ``encoder.engine`` with the TensorRT 10 Python API.

Build: Builder → network (explicit batch, weakly typed: precision from builder flags; fp16 by
default, LayerNormalization layers pinned to fp32 against the known ViT fp16 overflow) →
OnnxParser.parse_from_file → builder config (workspace pool limit, one optimisation profile
batch 1 / max/2 / max for ``pixels``, a timing cache loaded from and saved back to
``~/.cache/vidistill/trt_timing.cache``) → build_serialized_network → bytes on disk.
Running and verifying it is the runtime's :class:`~vidistill.runtime.backends.tensorrt.TensorRTEncoder`
(the runner a robot uses), driven by :func:`~vidistill.export.parity.check_cosine`.

Engines and timing caches are specific to the GPU model and the TensorRT version.
TensorRT 11 removed weakly typed builds: fp16/bf16 need TensorRT 10 (fp32 builds on either).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from vidistill.contract import EncoderContract
from vidistill.runtime.backends.tensorrt import import_tensorrt
from vidistill.runtime.ort import cache_dir

from .defaults import PRECISIONS
from .errors import ExportError, MissingBackendError

log = logging.getLogger(__name__)

WORKSPACE_BYTES = 4 << 30


def default_timing_cache() -> Path:
    return cache_dir() / "trt_timing.cache"


def _precision_flag(trt: Any, precision: str) -> Any:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return None
    flag = getattr(trt.BuilderFlag, precision.upper(), None)
    if flag is None:
        raise MissingBackendError(
            f"TensorRT {trt.__version__} has no weakly typed {precision} builds (removed in TensorRT 11): "
            "pip install 'tensorrt>=10,<11', or build with --precision fp32"
        )
    return flag


def _pin_norms_to_fp32(trt: Any, network: Any, config: Any) -> None:
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type == trt.LayerType.NORMALIZATION:
            layer.precision = trt.float32
            layer.set_output_type(0, trt.float32)
    config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)


def _use_timing_cache(config: Any, path: Path) -> None:
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data)
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        log.warning("TensorRT timing cache %s was made for another GPU/TensorRT: starting a new one", path)
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)


def _save_timing_cache(config: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    os.replace(tmp, path)  # concurrent builds: last writer wins, never a torn file


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    contract: EncoderContract,
    *,
    precision: str = "fp16",
    max_batch: int = 32,
    timing_cache: Path | None = None,
    workspace_bytes: int = WORKSPACE_BYTES,
) -> dict[str, Any]:
    """Build and write the engine; returns what the manifest records about it."""
    trt = import_tensorrt()
    flag = _precision_flag(trt, precision)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT's ONNX parser rejected {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if flag is not None:
        config.set_flag(flag)
        if precision == "fp16":
            _pin_norms_to_fp32(trt, network, config)
    h, w = contract.image_size
    profile = builder.create_optimization_profile()
    profile.set_shape(contract.input_name, (1, 3, h, w), (max(1, max_batch // 2), 3, h, w), (max_batch, 3, h, w))
    config.add_optimization_profile(profile)
    cache_path = Path(timing_cache or default_timing_cache())
    _use_timing_cache(config, cache_path)
    log.info("TensorRT %s: building a %s engine for batch 1..%d (minutes the first time)", trt.__version__, precision, max_batch)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT could not build an engine from {onnx_path.name} (see TensorRT's log above)")
    engine_path.write_bytes(bytes(serialized))
    _save_timing_cache(config, cache_path)
    return {
        "precision": precision,
        "max_batch": max_batch,
        "tensorrt": trt.__version__,
        "gpu": torch.cuda.get_device_name(),
        "timing_cache": str(cache_path),
    }
