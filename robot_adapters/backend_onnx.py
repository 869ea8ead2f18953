"""ONNX Runtime backend: CUDA execution provider when available (and asked), else CPU. No torch."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from vidistill.contract import EncoderContract
from vidistill.errors import CheckpointError

from .artefacts import contract_from_folder, contract_from_onnx_metadata
from .encoder import Encoder
from .errors import MissingBackendError

log = logging.getLogger(__name__)

INSTALL_ORT = "pip install onnxruntime (CPU) or onnxruntime-gpu (CUDA; `pip install vidistill[gpu]`)"


def import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise MissingBackendError(f"the ONNX backend needs ONNX Runtime, which is not installed: {INSTALL_ORT}") from None
    return onnxruntime


def make_ort_session(onnx_path: str | Path, device: str | None) -> tuple[Any, str]:
    """An InferenceSession for ``onnx_path`` and where it runs ("tensorrt[:i]", "cuda[:i]" or "cpu").

    The only place the adapters make sessions. Providers come from
    :func:`vidistill.export.runtime.ort_providers` (ONNX Runtime's TensorRT EP > CUDA EP > CPU for
    ``device`` None/"auto"; "cpu", "cuda[:i]", "tensorrt[:i]" ask for one, and a missing provider
    is an error naming what to install). One difference from ``make_ort_session`` there: the
    thread pool does not busy-wait between runs (see below).
    """
    from vidistill.export import runtime as rt  # torch-free by design

    ort = import_ort()
    path = Path(onnx_path)
    if not path.is_file():
        raise CheckpointError(f"{path}: ONNX file not found")
    kind, index = rt.parse_device(device)
    contract = None
    if kind in ("auto", "tensorrt") and rt.TRT_EP in ort.get_available_providers():
        try:
            contract = rt.read_contract(path)  # sizes the TensorRT EP's optimisation profile
        except CheckpointError:
            contract = None
    try:
        providers = rt.ort_providers(device or "auto", contract=contract)
    except rt.BackendUnavailable as e:
        raise MissingBackendError(f"device={device!r}: {e}") from None
    for _name, options in (p for p in providers if isinstance(p, tuple)):
        for key in ("trt_engine_cache_path", "trt_timing_cache_path"):
            if key in options:
                Path(options[key]).mkdir(parents=True, exist_ok=True)
    opts = rt.session_options()
    # No busy-waiting between runs: a spinning ORT pool steals the cores from the policy that runs
    # right after the encoder (measured on 2 cores: the next torch op up to 12x slower).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as e:  # ORT raises its own Fail/InvalidProtobuf/NoSuchFile types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: ONNX Runtime cannot load this model: {first}") from None
    where = rt.session_device(session)
    return session, where if where == "cpu" or not index else f"{where}:{index}"


class OnnxEncoder(Encoder):
    """Runs ``encoder.onnx`` (input ``pixels`` (B, 3, S, S), outputs ``cls``, ``patch_tokens``)."""

    backend = "onnx"

    def __init__(self, onnx_path: str | Path, device: str | None = None) -> None:
        onnx_path = Path(onnx_path)
        session, device = make_ort_session(onnx_path, device)
        meta = session.get_modelmeta().custom_metadata_map
        contract = contract_from_onnx_metadata(meta, onnx_path) or contract_from_folder(onnx_path.parent)
        if contract is None:
            raise CheckpointError(
                f"{onnx_path}: no encoder contract (no 'vidistill.contract' metadata and no config.json "
                "beside it): export it with `vidistill export`, which records the preprocessing"
            )
        super().__init__(contract, device, str(onnx_path))
        self._session = session
        self._input = self._check_io(session, contract, onnx_path)
        self._outputs = list(contract.output_names[:2])
        batch_dim = session.get_inputs()[0].shape[0]
        self._fixed_batch = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None

    @staticmethod
    def _check_io(session: Any, contract: EncoderContract, path: Path) -> str:
        inputs = {i.name: i.shape for i in session.get_inputs()}
        outputs = {o.name for o in session.get_outputs()}
        name = contract.input_name if contract.input_name in inputs else next(iter(inputs))
        missing = [n for n in contract.output_names[:2] if n not in outputs]
        if missing:
            raise CheckpointError(f"{path}: outputs {sorted(outputs)} lack {missing} named by the contract")
        shape = inputs[name]
        s = contract.image_size
        if len(shape) != 4 or any(isinstance(d, int) and d != e for d, e in zip(shape[1:], (3, s, s), strict=True)):
            raise CheckpointError(f"{path}: input {name!r} has shape {shape}, the contract says (B, 3, {s}, {s})")
        return name

    def _run(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._fixed_batch is None or len(pixels) == self._fixed_batch:
            cls, tokens = self._session.run(self._outputs, {self._input: pixels})
            return cls, tokens
        # An export traced with a fixed batch: run in chunks of that size, padding the last one.
        b = self._fixed_batch
        outs_cls, outs_tok = [], []
        for start in range(0, len(pixels), b):
            chunk = pixels[start : start + b]
            n = len(chunk)
            if n < b:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], b - n, axis=0)])
            cls, tokens = self._session.run(self._outputs, {self._input: chunk})
            outs_cls.append(cls[:n])
            outs_tok.append(tokens[:n])
        return np.concatenate(outs_cls), np.concatenate(outs_tok)

    def close(self) -> None:
        self._session = None
