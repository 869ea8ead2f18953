"""PyTorch → ``encoder.onnx``: dynamic batch, fixed resolution, simplified, contract in metadata.

Exporters: ``torch.onnx.export(dynamo=True)`` (the default since PyTorch 2.9; needs
``onnxscript``) gives the cleanest graph: static output shapes and almost no shape arithmetic.
It cannot make a size-1 dim dynamic, so it traces with batch 2. When it is missing or fails,
the TorchScript exporter (``dynamo=False``) is the fallback; its graph carries Constant/Identity
nodes and batch-dependent reshape arithmetic, most of which the simplification below removes.
Both graphs then go through the same steps and checks, so the artefact is the same either way
up to node order.

Simplification is ONNX Runtime's offline BASIC optimisation (constant folding, identity and
redundant-node elimination, all in standard ONNX ops: no contrib ops, so the file stays
portable to TensorRT); nothing else is installed for it. LayerNormalization stays one op
(opset >= 17).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from vidistill.contract import EncoderContract

from .defaults import DEFAULT_OPSET, EXPORTERS, METADATA_KEY, MIN_OPSET
from .errors import ExportError

log = logging.getLogger(__name__)

TRACE_BATCH = 2  # the dynamo exporter cannot make a size-1 dim dynamic
BATCH_DIM = "batch"


def _export_dynamo(model: nn.Module, example: torch.Tensor, path: Path, opset: int, contract: EncoderContract) -> None:
    batch = torch.export.Dim(BATCH_DIM, min=1)
    torch.onnx.export(
        model,
        (example,),
        str(path),
        dynamo=True,
        input_names=[contract.input_name],
        output_names=list(contract.output_names),
        opset_version=opset,
        dynamic_shapes=({0: batch},),
        external_data=False,
        optimize=True,
    )


def _export_legacy(model: nn.Module, example: torch.Tensor, path: Path, opset: int, contract: EncoderContract) -> None:
    names = [contract.input_name, *contract.output_names]
    torch.onnx.export(
        model,
        (example,),
        str(path),
        dynamo=False,
        input_names=[contract.input_name],
        output_names=list(contract.output_names),
        opset_version=opset,
        dynamic_axes={name: {0: BATCH_DIM} for name in names},
        do_constant_folding=True,
        training=torch.onnx.TrainingMode.EVAL,
    )


_EXPORT_FNS = {"dynamo": _export_dynamo, "legacy": _export_legacy}


@contextlib.contextmanager
def quiet_loggers(*names: str, level: int = logging.WARNING):
    """Raise chatty libraries' loggers (onnxscript logs every pass at INFO) for a while."""
    loggers = [logging.getLogger(n) for n in names]
    before = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(level, lg.getEffectiveLevel()))
    try:
        yield
    finally:
        for lg, lvl in zip(loggers, before, strict=True):
            lg.setLevel(lvl)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


def trace_to_onnx(
    model: nn.Module, contract: EncoderContract, path: Path, opset: int, exporter: str = "auto"
) -> str:
    """Export ``model`` to ``path`` with the first exporter that works; returns its name."""
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    if opset < MIN_OPSET:
        raise ExportError(f"--opset {opset}: use {MIN_OPSET} or newer (LayerNormalization as one op)")
    example = torch.randn(TRACE_BATCH, 3, *contract.image_size)
    failures = []
    for name in ("dynamo", "legacy") if exporter == "auto" else (exporter,):
        chatter = io.StringIO()
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(chatter), quiet_loggers("onnxscript", "onnx_ir"):
                warnings.simplefilter("ignore")
                _EXPORT_FNS[name](model, example, path, opset, contract)
            onnx.load(str(path), load_external_data=False)  # it wrote something loadable
        except Exception as e:  # ImportError (no onnxscript), torch.export failures, ...
            failures.append(f"{name}: {_first_line(e)}")
            missing = isinstance(e, ImportError)  # no onnxscript: expected, the fallback is normal
            log.log(logging.INFO if missing else logging.WARNING, "ONNX %s exporter failed (%s)%s", name,
                    _first_line(e), "; trying the next one" if name == "dynamo" and exporter == "auto" else "")
            path.unlink(missing_ok=True)
            continue
        finally:
            if chatter.getvalue().strip():
                log.debug("torch.onnx (%s): %s", name, chatter.getvalue().strip())
        return name
    raise ExportError("ONNX export failed: " + "; ".join(failures))


def simplify(src: Path, dst: Path) -> None:
    """Constant folding + redundant-node elimination with ONNX Runtime's offline BASIC level."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.optimized_model_filepath = str(dst)
    opts.log_severity_level = 3
    try:
        ort.InferenceSession(str(src), opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise ExportError(f"ONNX Runtime cannot load the exported graph: {_first_line(e)}") from None


def _strip_unused_opsets(model: onnx.ModelProto) -> None:
    used = {n.domain for n in model.graph.node} | {""}
    keep = [o for o in model.opset_import if o.domain in used or (o.domain == "ai.onnx" and "" in used)]
    del model.opset_import[:]
    model.opset_import.extend(keep)


def _set_dims(value: onnx.ValueInfoProto, dims: tuple) -> None:
    shape = value.type.tensor_type.shape
    del shape.dim[:]
    for d in dims:
        dim = shape.dim.add()
        if isinstance(d, str):
            dim.dim_param = d
        else:
            dim.dim_value = int(d)


def _declare_io(model: onnx.ModelProto, contract: EncoderContract) -> None:
    """One batch name on every I/O; every other dim fixed and written out (TensorRT reads them)."""
    (h, w), d, p = contract.image_size, contract.embed_dim, contract.num_patches
    graph = model.graph
    inputs = [i for i in graph.input if i.name not in {t.name for t in graph.initializer}]
    if [i.name for i in inputs] != [contract.input_name]:
        raise ExportError(f"exported graph inputs are {[i.name for i in inputs]}, expected [{contract.input_name!r}]")
    cls_name, tokens_name = contract.output_names[:2]
    if [o.name for o in graph.output] != [cls_name, tokens_name]:
        raise ExportError(f"exported graph outputs are {[o.name for o in graph.output]}, expected {[cls_name, tokens_name]}")
    _set_dims(inputs[0], (BATCH_DIM, 3, h, w))
    _set_dims(graph.output[0], (BATCH_DIM, d))
    _set_dims(graph.output[1], (BATCH_DIM, p, d))


def metadata_for(contract: EncoderContract, exporter: str) -> dict[str, str]:
    """``metadata_props``: the contract as JSON (machine) plus readable preprocessing keys."""
    (h, w), g = contract.image_size, contract.grid_size
    return {
        METADATA_KEY: contract.to_json(),
        "vidistill.model_name": contract.model_name,
        "vidistill.image_size": f"{h}x{w}",
        "vidistill.resize": f"{contract.resize} {contract.interpolation}",
        "vidistill.mean": ",".join(f"{m:g}" for m in contract.mean),
        "vidistill.std": ",".join(f"{v:g}" for v in contract.std),
        "vidistill.input": (
            f"{contract.input_name}: float32 (batch, 3, {h}, {w}) {contract.channel_order} {contract.layout}, "
            f"frames brought to {h}x{w} by {contract.resize} (antialiased {contract.interpolation}), "
            "pixel values scaled to [0, 1] then (x - mean) / std"
        ),
        "vidistill.outputs": (
            f"{contract.output_names[0]}: (batch, {contract.embed_dim}); {contract.output_names[1]}: "
            f"(batch, {contract.num_patches}, {contract.embed_dim}), row-major {g[0]}x{g[1]} grid"
        ),
        "vidistill.exporter": exporter,
    }


def finalize(path: Path, contract: EncoderContract, exporter: str) -> onnx.ModelProto:
    """Declared I/O shapes, unused opset imports dropped, metadata set, checked, saved in place."""
    model = onnx.load(str(path))
    _declare_io(model, contract)
    _strip_unused_opsets(model)
    model.graph.name = "vidistill_encoder"
    model.doc_string = f"vidistill encoder {contract.model_name} at {contract.height}x{contract.width} px"
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, metadata_for(contract, exporter))
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:
        raise ExportError(f"the exported ONNX graph does not pass onnx.checker: {_first_line(e)}") from None
    onnx.save(model, str(path))
    return model


def export_onnx(
    model: nn.Module,
    contract: EncoderContract,
    path: Path,
    opset: int = DEFAULT_OPSET,
    exporter: str = "auto",
) -> tuple[onnx.ModelProto, str]:
    """Write the finished ``encoder.onnx`` to ``path``; returns the model and the exporter used."""
    raw = path.with_name(path.stem + ".raw.onnx")
    try:
        used = trace_to_onnx(model, contract, raw, opset, exporter)
        log.info("ONNX: traced with the %s exporter (opset %d); simplifying", used, opset)
        simplify(raw, path)
    finally:
        raw.unlink(missing_ok=True)
    return finalize(path, contract, used), used
