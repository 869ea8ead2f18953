"""``load_encoder``: one entry point from any artefact to an :class:`Encoder`.

``backend="auto"`` picks, among the artefacts present and the runtimes installed:
TensorRT (``encoder.engine`` + tensorrt + a GPU) > ONNX Runtime on a GPU (its TensorRT EP or
CUDA EP) > torch on a CUDA GPU (bf16; where no TensorRT or ONNX Runtime GPU build exists) >
ONNX Runtime on the CPU > torch on the CPU.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

from vidistill.contract import as_hw
from vidistill.errors import CheckpointError, VidistillError

from .artefacts import Artefacts, find_artefacts
from .encoder import Encoder
from .errors import MissingBackendError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnx", "tensorrt")


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a module blocked in sys.modules (None) has no spec
        return False


def _ort_on_gpu() -> bool:
    from .ort import CUDA_EP, TRT_EP, import_ort

    return bool({CUDA_EP, TRT_EP} & set(import_ort().get_available_providers()))


def _torch_on_gpu() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def choose_backend(found: Artefacts, device: str | None = None) -> str:
    """The backend ``auto`` uses for these artefacts on this machine (see module docstring)."""
    from .backends.tensorrt import tensorrt_problem

    on_cpu = device == "cpu"
    has_ort = found.onnx is not None and _has_module("onnxruntime")
    has_torch = (found.safetensors is not None or found.checkpoint is not None) and _has_module("torch")
    if found.engine is not None and not on_cpu and tensorrt_problem() is None:
        return "tensorrt"
    if has_ort and (on_cpu or _ort_on_gpu()):
        return "onnx"
    if has_torch and not on_cpu and _torch_on_gpu():
        return "torch"
    if has_ort:
        return "onnx"
    if has_torch:
        return "torch"
    needs = []
    if found.engine is not None:
        needs.append(f"{found.engine.name}: pip install tensorrt (and a CUDA GPU)")
    if found.onnx is not None:
        needs.append(f"{found.onnx.name}: pip install onnxruntime (or onnxruntime-gpu)")
    if found.safetensors is not None or found.checkpoint is not None:
        needs.append("torch weights: pip install torch timm safetensors")
    if not needs:
        raise CheckpointError(
            f"{found.path}: no encoder artefact found (expected encoder.engine, encoder.onnx, "
            "encoder.safetensors + config.json from `vidistill export`, or a run folder with checkpoint.pt)"
        )
    raise MissingBackendError(f"{found.path}: no runtime installed for the artefacts here; " + "; ".join(needs))


def _require(artefact: Path | None, backend: str, found: Artefacts, hint: str) -> Path:
    if artefact is None:
        raise CheckpointError(f"{found.path}: backend={backend!r} needs {hint}, not found here (found {found.describe()})")
    return artefact


def load_encoder(
    path: str | Path,
    backend: str = "auto",
    device: str | None = None,
    *,
    image_size: Any = None,
    branch: str = "teacher",
    precision: str = "auto",
    compile: str | None = None,
) -> Encoder:
    """Load an encoder from an export folder, a run folder, or one artefact file.

    Args:
        path: export folder (encoder.engine / encoder.onnx / encoder.safetensors + config.json),
            ``.onnx``, ``.engine``, ``.safetensors`` (with its config.json), a checkpoint ``.pt``
            or a run folder.
        backend: "auto" (see the module docstring), "tensorrt", "onnx" or "torch".
        device: None/"auto" for the best available, "cpu", "cuda[:N]" ("tensorrt[:N]" for ONNX
            Runtime's TensorRT provider).
        image_size: torch backend only: run at this (H, W) (position embedding resampled once);
            ONNX and TensorRT artefacts are fixed at their exported size.
        branch: "student" serves a checkpoint's student (torch backend; a diagnostic).
        precision, compile: torch backend options (see :class:`TorchEncoder`).

    Raises:
        CheckpointError: the artefact is missing, unreadable or has no contract.
        MissingBackendError: the runtime the artefact needs is not installed (names what to install).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    device = None if device == "auto" else device
    found = find_artefacts(path)
    if backend == "auto":
        wants_torch = branch != "teacher" or image_size is not None
        chosen = "torch" if wants_torch else choose_backend(found, device)
    else:
        chosen = backend
    if chosen == "tensorrt":
        from .backends.tensorrt import TensorRTEncoder

        engine = _require(found.engine, chosen, found, "a TensorRT engine (encoder.engine; `vidistill export --trt`)")
        encoder: Encoder = TensorRTEncoder(engine, device)
    elif chosen == "onnx":
        from .backends.onnx import OnnxEncoder

        encoder = OnnxEncoder(_require(found.onnx, chosen, found, "encoder.onnx (`vidistill export`)"), device)
    else:
        try:
            from .backends.torch import TorchEncoder
        except ImportError as e:
            raise MissingBackendError(f"the torch backend needs PyTorch: {e}") from None

        if found.safetensors is None and found.checkpoint is None:
            _require(None, chosen, found, "encoder.safetensors + config.json or a checkpoint.pt")
        encoder = TorchEncoder.from_path(found.path, device, image_size=image_size, branch=branch,
                                         precision=precision, compile=compile)
    if chosen != "torch" and (branch != "teacher" or (image_size and as_hw(image_size) != encoder.image_size)):
        h, w = encoder.image_size
        raise VidistillError(
            f"{encoder.source}: the {chosen} artefact is the teacher fixed at {h}x{w}; "
            "use the torch backend for another size or the student"
        )
    log.info("loaded %r", encoder)
    return encoder
