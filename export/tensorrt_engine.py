"""``encoder.onnx`` → ``encoder.engine`` with the TensorRT 10 Python API, verified on the GPU.

Build: Builder → network (explicit batch, weakly typed: precision from builder flags; fp16 by
default, LayerNormalization layers pinned to fp32 against the known ViT fp16 overflow) →
OnnxParser.parse_from_file → builder config (workspace pool limit, one optimisation profile
batch 1 / max/2 / max for ``pixels``, a timing cache loaded from and saved back to
``~/.cache/vidistill/trt_timing.cache``) → build_serialized_network → bytes on disk.
Run: torch CUDA tensors as I/O buffers, ``set_tensor_address`` + ``execute_async_v3``.

Engines and timing caches are specific to the GPU model and the TensorRT version.
TensorRT 11 removed weakly typed builds: fp16/bf16 need TensorRT 10 (fp32 builds on either).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from vidistill.contract import EncoderContract

from .defaults import PRECISIONS, TRT_MIN_COSINE
from .errors import BackendUnavailable, ExportError, ParityError
from .parity import random_pixels, token_cosine
from .runtime import cache_dir

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'vidistill[trt]' on a machine with an NVIDIA GPU and CUDA"
WORKSPACE_BYTES = 4 << 30


def default_timing_cache() -> Path:
    return cache_dir() / "trt_timing.cache"


def tensorrt_problem() -> str | None:
    """Why no engine can be built here, or None when TensorRT and a CUDA GPU are usable."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "TensorRT is not installed"
    except Exception as e:  # a broken install (missing CUDA libraries) raises OSError & co.
        return f"TensorRT cannot be imported ({type(e).__name__}: {e})"
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible to PyTorch (engines are built and verified on the GPU)"
    return None


def require_tensorrt() -> Any:
    problem = tensorrt_problem()
    if problem:
        raise BackendUnavailable(f"{problem}: {INSTALL_HINT}")
    import tensorrt

    return tensorrt


def _precision_flag(trt: Any, precision: str) -> Any:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return None
    flag = getattr(trt.BuilderFlag, precision.upper(), None)
    if flag is None:
        raise BackendUnavailable(
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
    trt = require_tensorrt()
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
    s = contract.image_size
    profile = builder.create_optimization_profile()
    profile.set_shape(contract.input_name, (1, 3, s, s), (max(1, max_batch // 2), 3, s, s), (max_batch, 3, s, s))
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


class EngineRunner:
    """A deserialised engine run with torch CUDA tensors as its buffers."""

    def __init__(self, engine: Path | bytes):
        trt = require_tensorrt()
        self._trt = trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        data = engine if isinstance(engine, bytes) else Path(engine).read_bytes()
        self.engine = self._runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise ExportError(f"TensorRT {trt.__version__} cannot deserialise this engine (another GPU or version?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = lambda n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT  # noqa: E731
        self.inputs = [n for n in names if is_input(n)]
        self.outputs = [n for n in names if not is_input(n)]
        self._dtypes = {
            trt.float32: torch.float32, trt.float16: torch.float16, trt.bfloat16: torch.bfloat16,
            trt.int32: torch.int32, trt.int64: torch.int64, trt.bool: torch.bool,
        }

    def __call__(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        x = pixels.to("cuda", torch.float32).contiguous()
        name = self.inputs[0]
        self.context.set_input_shape(name, tuple(x.shape))
        self.context.set_tensor_address(name, x.data_ptr())
        out = {}
        for n in self.outputs:
            shape = tuple(self.context.get_tensor_shape(n))
            out[n] = torch.empty(shape, dtype=self._dtypes[self.engine.get_tensor_dtype(n)], device="cuda")
            self.context.set_tensor_address(n, out[n].data_ptr())
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise ExportError("TensorRT execute_async_v3 failed")
        stream.synchronize()
        return out


@torch.inference_mode()
def verify_engine(
    reference: torch.nn.Module,
    engine_path: Path,
    contract: EncoderContract,
    batches: Sequence[int],
    min_cosine: float = TRT_MIN_COSINE,
) -> dict[str, float]:
    """Per-token cosine of the engine's outputs vs the fp32 PyTorch teacher on the GPU."""
    runner = EngineRunner(engine_path)
    cls_name, tokens_name = contract.output_names[:2]
    reference = reference.to("cuda").float()
    worst = {"cosine_patch_tokens": 1.0, "cosine_patch_tokens_min": 1.0, "cosine_cls": 1.0}
    try:
        for batch in batches:
            pixels = random_pixels(batch, contract).cuda()
            ref_cls, ref_tokens = reference(pixels)
            got = runner(pixels)
            mean_t, min_t = token_cosine(got[tokens_name], ref_tokens)
            mean_c, _ = token_cosine(got[cls_name], ref_cls)
            worst["cosine_patch_tokens"] = min(worst["cosine_patch_tokens"], mean_t)
            worst["cosine_patch_tokens_min"] = min(worst["cosine_patch_tokens_min"], min_t)
            worst["cosine_cls"] = min(worst["cosine_cls"], mean_c)
    finally:
        reference.to("cpu")
    if not worst["cosine_patch_tokens"] >= min_cosine:
        raise ParityError(
            f"encoder.engine does not match the PyTorch teacher: patch-token cosine "
            f"{worst['cosine_patch_tokens']:.5f} < {min_cosine} (cls {worst['cosine_cls']:.5f})"
        )
    return worst
