"""ONNX Runtime: the one session factory, its providers and options, the contract in metadata. No torch.

    from vidistill.runtime.ort import make_ort_session, read_contract
    session = make_ort_session("export/encoder.onnx", device="auto")  # TensorRT EP > CUDA > CPU
    contract = read_contract(session)
    cls, patch_tokens = session.run(None, {contract.input_name: pixels})

``device``: "auto"/None (best available), "cpu", "cuda[:i]", "tensorrt[:i]" (ONNX Runtime's
TensorRT execution provider, fp16, with its engine and timing caches under ``~/.cache/vidistill``).
Asking for a GPU provider this onnxruntime lacks is an error naming what to install, not a
silent CPU run.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from vidistill.contract import EncoderContract
from vidistill.errors import CheckpointError

from .errors import MissingBackendError
from .names import METADATA_KEY

log = logging.getLogger(__name__)

TRT_EP, CUDA_EP, CPU_EP = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
DEVICES = ("auto", "cpu", "cuda", "tensorrt")
DEFAULT_MAX_BATCH = 32  # the TensorRT optimisation profile's largest batch
INSTALL_ORT = "pip install onnxruntime (CPU) or onnxruntime-gpu (CUDA; `pip install 'vidistill[gpu]'`)"
INSTALL_GPU_ORT = (
    "pip uninstall onnxruntime && pip install onnxruntime-gpu (`pip install 'vidistill[gpu]'`) on a "
    "machine with an NVIDIA GPU and CUDA; the TensorRT provider also needs TensorRT's libraries "
    "(`pip install 'vidistill[trt]'`)"
)
WORKSPACE_BYTES = 4 << 30


def import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise MissingBackendError(f"ONNX Runtime is not installed: {INSTALL_ORT}") from None
    return onnxruntime


def cache_dir() -> Path:
    """``$VIDISTILL_CACHE`` or ``~/.cache/vidistill``: TensorRT engine and timing caches."""
    return Path(os.environ.get("VIDISTILL_CACHE", "~/.cache/vidistill")).expanduser()


def parse_device(device: str | None) -> tuple[str, int]:
    """"cuda:1" → ("cuda", 1); None → ("auto", 0); "trt" is an alias of "tensorrt"."""
    kind, _, index = (device or "auto").lower().partition(":")
    kind = {"trt": "tensorrt", "gpu": "cuda"}.get(kind, kind)
    if kind not in DEVICES or (index and not index.isdigit()):
        raise ValueError(f"device must be one of {DEVICES} (optionally ':N' for a GPU), got {device!r}")
    return kind, int(index or 0)


def _profile_shapes(contract: EncoderContract, max_batch: int) -> dict[str, str]:
    h, w = contract.image_size
    shape = lambda b: f"{contract.input_name}:{b}x3x{h}x{w}"  # noqa: E731
    return {
        "trt_profile_min_shapes": shape(1),
        "trt_profile_opt_shapes": shape(max(1, max_batch // 2)),
        "trt_profile_max_shapes": shape(max_batch),
    }


def ort_providers(
    prefer: str | None = "auto",
    *,
    fp16: bool = True,
    contract: EncoderContract | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    cache: Path | None = None,
    available: list[str] | None = None,
) -> list[Any]:
    """Execution providers for ``prefer`` ("auto", "cpu", "cuda[:i]", "tensorrt[:i]"), best first.

    TensorRT EP: fp16, engine + timing caches under ``cache`` (reused across sessions: the first
    session builds the engine, minutes; later ones load it), an optimisation profile for batch
    1..``max_batch`` when the contract is known. CUDA EP after it (ops TensorRT does not take),
    CPU last.
    """
    kind, index = parse_device(prefer)
    have = set(import_ort().get_available_providers() if available is None else available)
    if kind == "tensorrt" and TRT_EP not in have:
        raise MissingBackendError(f"ONNX Runtime's TensorRT provider is not available (have {sorted(have)}): {INSTALL_GPU_ORT}")
    if kind == "cuda" and CUDA_EP not in have:
        raise MissingBackendError(f"ONNX Runtime's CUDA provider is not available (have {sorted(have)}): {INSTALL_GPU_ORT}")
    providers: list[Any] = []
    if kind in ("auto", "tensorrt") and TRT_EP in have:
        folder = (cache or cache_dir()) / "ort-tensorrt"
        options: dict[str, Any] = {
            "device_id": index,
            "trt_fp16_enable": fp16,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(folder),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(folder),
            "trt_max_workspace_size": WORKSPACE_BYTES,
        }
        if contract is not None:
            options.update(_profile_shapes(contract, max_batch))
        providers.append((TRT_EP, options))
    if kind in ("auto", "tensorrt", "cuda") and CUDA_EP in have:
        providers.append((CUDA_EP, {"device_id": index}))
    providers.append(CPU_EP)
    return providers


def allowed_cpus() -> int | None:
    """CPUs this process may run on when that is fewer than the machine has (taskset, cpuset)."""
    try:
        allowed = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return None
    return allowed if allowed < (os.cpu_count() or allowed) else None


def session_options(threads: int | None = None) -> Any:
    """All graph optimisations (ORT fuses LayerNorm, GELU, scaled MatMul on CPU), no spinning.

    ``threads`` None: ONNX Runtime's default (one intra-op thread per physical core), except in
    a process restricted to fewer CPUs (taskset, cpuset): ORT's default pool pins its threads
    across the whole machine regardless (measured: a process on 2 of 16 CPUs ran ORT at 16-core
    speed), which takes the cores a robot kept for its control loop. There it gets one thread
    per allowed CPU, and stays on them. The pool does not busy-wait between runs: a spinning
    pool steals the cores from the policy that runs right after the encoder (measured on 2
    cores: the next torch op up to 12x slower).
    """
    ort = import_ort()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    threads = threads or allowed_cpus()
    if threads:
        opts.intra_op_num_threads = int(threads)
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return opts


def contract_from_metadata(metadata: dict[str, str], source: Any) -> EncoderContract | None:
    """The contract in ONNX ``metadata_props`` (None when absent; an error when malformed)."""
    raw = metadata.get(METADATA_KEY)
    if raw is None:
        return None
    try:
        return EncoderContract.from_json(raw)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{source}: metadata {METADATA_KEY!r} is not a valid encoder contract: {e}") from None


def read_onnx_metadata(onnx_path: Path) -> dict[str, str]:
    """metadata_props of an ONNX file, read with the ``onnx`` package (without weights) if installed."""
    try:
        import onnx
    except ImportError:
        return {}
    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception:  # not an ONNX file: the session factory names the problem
        return {}
    return {p.key: p.value for p in model.metadata_props}


def make_ort_session(
    onnx_path: str | Path,
    device: str | None = "auto",
    *,
    threads: int | None = None,
    fp16: bool = True,
    max_batch: int = DEFAULT_MAX_BATCH,
    cache: Path | None = None,
) -> Any:
    """The one ``onnxruntime.InferenceSession`` factory for an exported encoder on ``device``.

    ``session_device(session)`` tells where it runs.
    """
    ort = import_ort()
    path = Path(onnx_path)
    if not path.is_file():
        raise CheckpointError(f"{path}: ONNX file not found")
    kind, _ = parse_device(device)
    contract = None
    if kind in ("auto", "tensorrt") and TRT_EP in ort.get_available_providers():  # sizes the TRT profile
        contract = contract_from_metadata(read_onnx_metadata(path), path)
    providers = ort_providers(device, fp16=fp16, contract=contract, max_batch=max_batch, cache=cache)
    for _name, opts in (p for p in providers if isinstance(p, tuple)):
        for key in ("trt_engine_cache_path", "trt_timing_cache_path"):
            if key in opts:
                Path(opts[key]).mkdir(parents=True, exist_ok=True)
    try:
        session = ort.InferenceSession(str(path), sess_options=session_options(threads), providers=providers)
    except Exception as e:  # ORT raises its own InvalidProtobuf / Fail / NoSuchFile types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: ONNX Runtime cannot load this model: {first}") from None
    log.debug("ONNX Runtime session for %s on %s", path, session.get_providers())
    return session


def session_device(session: Any) -> str:
    """"tensorrt", "cuda" or "cpu": the provider a session prefers."""
    first = session.get_providers()[0]
    return {TRT_EP: "tensorrt", CUDA_EP: "cuda"}.get(first, "cpu")


def read_contract(source: Any) -> EncoderContract:
    """The encoder contract from an InferenceSession's metadata or an ``.onnx`` path."""
    if isinstance(source, (str, Path)):
        contract = contract_from_metadata(read_onnx_metadata(Path(source)), source)
        name = str(source)
    else:
        name = "this ONNX model"
        contract = contract_from_metadata(source.get_modelmeta().custom_metadata_map, name)
    if contract is None:
        raise CheckpointError(f"{name}: no '{METADATA_KEY}' metadata (not exported by `vidistill export`?)")
    return contract
