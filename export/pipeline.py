"""The whole export: checkpoint → teacher → verified artefacts + manifest in one folder.

The source is a run's teacher (run folder, checkpoint, or the latest run), or any encoder the
runtime serves with torch: a timm hub folder (``config.json`` + ``model.safetensors``, what
``save_for_hf`` writes: the encoder a team starts from), an export folder, a ``.safetensors``
file with its ``config.json``. So the encoder before adaptation ships through the same checks
as the one after, and the two can be compared on the robot's own runtime.

Order: safetensors + config.json (reloaded through plain timm, and served by the runtime's torch
backend, each compared) → ONNX (static graph check, the runtime's ONNX Runtime backend compared
at batch 1, 3, 8) → publish these with the manifest → TensorRT engine (built from the published
ONNX, run by the runtime's TensorRT backend on the GPU, then published and added to the
manifest). Every parity number is measured through :mod:`vidistill.runtime`, the code a robot
runs. Every artefact is written in a staging folder inside the output folder and moved
into place only once verified, so a failed check deletes or overwrites nothing. When TensorRT
is asked for but unusable, the other artefacts are still published, then the error says so.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidistill.contract import CONTRACT_VERSION, RESIZE_MODES, EncoderContract, as_hw
from vidistill.errors import VidistillError
from vidistill.runtime.artefacts import find_artefacts
from vidistill.runtime.backends.onnx import OnnxEncoder
from vidistill.runtime.backends.torch import TorchEncoder
from vidistill.runtime.checkpoints import backbone_state
from vidistill.runtime.torch_model import (
    TokenEncoder,
    build_timm_encoder,
    disable_fused_attention,
    load_weights,
    rebuild_at_size,
)

from .defaults import (
    CONFIG_NAME,
    DEFAULT_MAX_BATCH,
    DEFAULT_OPSET,
    ENGINE_NAME,
    MANIFEST_NAME,
    MIN_OPSET,
    ONNX_NAME,
    ORT_ATOL,
    PARITY_BATCHES,
    PRECISIONS,
    SAFETENSORS_NAME,
    TRT_MIN_COSINE,
)
from .errors import ExportError, MissingBackendError, ParityError
from .graph_check import TRT_OPSET_RANGE, assert_graph_ok, default_opset, op_counts
from .manifest import build_manifest, describe_file, write_manifest
from .onnx_export import export_onnx, quiet_loggers
from .parity import check_cosine, check_parity, max_abs_diff, random_pixels, torch_outputs
from .staging import Staging
from .timm_artifact import load_timm_encoder, write_timm_artifacts

log = logging.getLogger(__name__)


@dataclass
class ExportOptions:
    source: str | Path | None = None  # run folder, checkpoint, torch artefact (hub / export folder, .safetensors); None: the latest run
    output: str | Path | None = None  # None: <run folder>/export
    onnx: bool = True
    trt: bool = False  # implies the ONNX file (the engine is built from it)
    precision: str = "fp16"  # TensorRT engine precision
    image_size: int | tuple[int, int] | str | None = None  # S, (H, W) or "HxW"; None: the training size
    resize: str | None = None  # crop | letterbox | stretch recorded in the contract; None: crop
    max_batch: int = DEFAULT_MAX_BATCH  # TensorRT profile max
    opset: int = DEFAULT_OPSET
    exporter: str = "auto"  # auto | dynamo | legacy
    atol: float = ORT_ATOL
    parity_batches: tuple[int, ...] = PARITY_BATCHES
    min_cosine: float = TRT_MIN_COSINE
    timing_cache: str | Path | None = None


@dataclass
class ExportResult:
    output: Path
    files: list[Path]
    manifest: dict[str, Any] = field(default_factory=dict)


def _validate(opts: ExportOptions) -> None:
    if opts.resize is not None and opts.resize not in RESIZE_MODES:
        raise VidistillError(f"--resize must be one of {', '.join(RESIZE_MODES)}, got {opts.resize!r}")
    if opts.image_size is not None:
        try:
            as_hw(opts.image_size)
        except ValueError as e:
            raise VidistillError(f"--image-size: {e}") from None
    if opts.precision not in PRECISIONS:
        raise VidistillError(f"--precision must be one of {', '.join(PRECISIONS)}, got {opts.precision!r}")
    if opts.max_batch < 1:
        raise VidistillError(f"--max-batch must be >= 1, got {opts.max_batch}")
    lo, hi = MIN_OPSET, TRT_OPSET_RANGE[1]
    if not lo <= opts.opset <= hi:
        raise VidistillError(
            f"--opset {opts.opset}: use {lo}..{hi} (LayerNormalization is one op from {lo}; TensorRT 10 "
            f"parses up to {hi}, and every export is kept TensorRT-ready)"
        )


def _check_timm_reload(folder: Path, reference: TokenEncoder, contract: EncoderContract, atol: float) -> float:
    """The staged safetensors through timm alone must compute what the teacher computes."""
    with quiet_loggers("timm"):
        reloaded = TokenEncoder(load_timm_encoder(folder)).eval()
    pixels = random_pixels(2, contract)
    diff = max_abs_diff(torch_outputs(reloaded, pixels), torch_outputs(reference, pixels))
    if not diff <= atol:
        raise ParityError(f"{SAFETENSORS_NAME} reloaded with timm differs from the teacher by {diff:.3g} (> {atol:g})")
    return diff


def _onnx_io(contract: EncoderContract) -> dict[str, Any]:
    (h, w), d, p = contract.image_size, contract.embed_dim, contract.num_patches
    cls_name, tokens_name = contract.output_names[:2]
    return {
        "input": {"name": contract.input_name, "shape": ["batch", 3, h, w], "dtype": "float32"},
        "outputs": {cls_name: ["batch", d], tokens_name: ["batch", p, d]},
    }


def _stale_files(output: Path, written: set[str]) -> None:
    for name in (ONNX_NAME, ENGINE_NAME):
        if name not in written and (output / name).exists():
            log.warning("%s is from an earlier export (not listed in %s): delete it or re-export with it",
                        output / name, MANIFEST_NAME)


def source_weights(source: str | Path | None) -> tuple[dict, EncoderContract, Path]:
    """(backbone state dict, contract, file read) of what is exported.

    A run's checkpoint wins over torch weights found beside it: a run folder that was exported
    before also holds ``export/encoder.safetensors``, which may be older than its checkpoint.
    """
    if source is None:
        return backbone_state(None)
    found = find_artefacts(source)
    if found.checkpoint is not None:
        return backbone_state(found.checkpoint)
    return load_weights(source)


def _reference(state: dict, contract: EncoderContract) -> TokenEncoder:
    """The teacher as training ran it: dynamic-size timm model, fused attention, fp32 on CPU."""
    backbone = build_timm_encoder(contract, dynamic=True)
    backbone.load_state_dict(state, strict=True)
    return TokenEncoder(backbone.eval().requires_grad_(False)).eval()


def export_checkpoint(opts: ExportOptions) -> ExportResult:
    _validate(opts)
    state, contract, ckpt = source_weights(opts.source)
    output = Path(opts.output) if opts.output else ckpt.parent / "export"
    want_onnx = opts.onnx or opts.trt
    trt_problem = None
    if opts.trt:
        from vidistill.runtime.backends.tensorrt import tensorrt_problem

        trt_problem = tensorrt_problem()
        if trt_problem:
            log.warning("--trt: %s; writing the other artefacts first", trt_problem)
    log.info("exporting %s (%s) to %s", ckpt, contract.model_name, output)
    encoder, export_contract = rebuild_at_size(state, contract, as_hw(opts.image_size) if opts.image_size else None, ckpt)
    reference = _reference(state, contract)  # after the rebuild, which names a weights mismatch clearly
    contract = export_contract
    contract = dataclasses.replace(contract, resize=opts.resize or "crop", version=CONTRACT_VERSION)
    disable_fused_attention(encoder)
    artifacts: dict[str, dict[str, Any]] = {}
    parity: dict[str, Any] = {}

    with Staging(output) as stage:
        names = [p.name for p in write_timm_artifacts(encoder.backbone, contract, stage.path)]
        diff = _check_timm_reload(stage.path, reference, contract, opts.atol)
        parity["timm_reload"] = {"batch": 2, "max_abs_diff": diff}
        log.info("%s + %s: timm reload matches the teacher (max |diff| %.2g)", SAFETENSORS_NAME, CONFIG_NAME, diff)
        served = TorchEncoder.from_path(stage.path, "cpu", precision="fp32")
        diffs = check_parity(reference, served, SAFETENSORS_NAME, opts.parity_batches, opts.atol)
        parity["torch"] = {"device": "cpu", "precision": "fp32", "atol": opts.atol, "max_abs_diff": diffs}
        del served
        for name in names:
            artifacts[name] = describe_file(stage.file(name))

        if want_onnx:
            onnx_path = stage.file(ONNX_NAME)
            model, exporter = export_onnx(encoder, contract, onnx_path, opts.opset, opts.exporter)
            assert_graph_ok(model)
            served = OnnxEncoder(onnx_path, "cpu")
            diffs = check_parity(reference, served, ONNX_NAME, opts.parity_batches, opts.atol)
            log.info("%s: ONNX Runtime matches the teacher, max |diff| per batch %s", ONNX_NAME,
                     {k: f"{v:.2g}" for k, v in diffs.items()})
            parity["onnxruntime"] = {"provider": "CPUExecutionProvider", "atol": opts.atol, "max_abs_diff": diffs}
            artifacts[ONNX_NAME] = describe_file(
                onnx_path, opset=default_opset(model), exporter=exporter, **_onnx_io(contract), ops=op_counts(model)
            )
            names.append(ONNX_NAME)
            served.close()

        manifest = build_manifest(contract, ckpt, artifacts, parity)
        write_manifest(stage.path, manifest)
        files = stage.publish([*names, MANIFEST_NAME])

        if opts.trt:
            written = ", ".join(names + [MANIFEST_NAME])
            try:
                if trt_problem:
                    from vidistill.runtime.backends.tensorrt import INSTALL_TRT

                    raise MissingBackendError(f"--trt: {trt_problem}: {INSTALL_TRT}")
                files.append(_export_engine(opts, output, stage, reference, contract, manifest))
                names.append(ENGINE_NAME)
            except VidistillError as e:
                raise type(e)(f"{e}\n(the other artefacts were written and verified: {written} in {output})") from None
            except Exception as e:  # TensorRT/CUDA runtime errors: one clear line, details with -v
                log.debug("TensorRT engine failed", exc_info=True)
                raise ExportError(
                    f"TensorRT engine failed: {type(e).__name__}: {e}\n(the other artefacts were written and "
                    f"verified: {written} in {output}; run with -v for the traceback)"
                ) from None

    _stale_files(output, set(names))
    log.info("export done: %s", ", ".join(str(f) for f in files))
    return ExportResult(output=output, files=files, manifest=manifest)


def _export_engine(
    opts: ExportOptions, output: Path, stage: Staging, reference: TokenEncoder,
    contract: EncoderContract, manifest: dict[str, Any],
) -> Path:
    from vidistill.runtime.backends.tensorrt import TensorRTEncoder

    from .tensorrt_engine import build_engine

    engine_path = stage.file(ENGINE_NAME)
    info = build_engine(
        output / ONNX_NAME, engine_path, contract, precision=opts.precision, max_batch=opts.max_batch,
        timing_cache=Path(opts.timing_cache) if opts.timing_cache else None,
    )
    batches = sorted({1, min(3, opts.max_batch), opts.max_batch})
    served = TensorRTEncoder(engine_path, "cuda", contract=contract)
    try:
        cosine = check_cosine(reference, served, ENGINE_NAME, batches, opts.min_cosine)
    finally:
        served.close()
    log.info("%s: %s engine matches the teacher, patch-token cosine %.5f", ENGINE_NAME, opts.precision,
             cosine["cosine_patch_tokens"])
    manifest["artifacts"][ENGINE_NAME] = describe_file(engine_path, **info)
    manifest["parity"]["tensorrt"] = {"batches": batches, "min_cosine": opts.min_cosine, **cosine}
    write_manifest(stage.path, manifest)
    engine, _ = stage.publish([ENGINE_NAME, MANIFEST_NAME])
    return engine
