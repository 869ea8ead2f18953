"""ONNX Runtime backend: ``encoder.onnx`` through the one session factory (:mod:`.ort`). No torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vidistill.contract import EncoderContract
from vidistill.errors import CheckpointError

from ..artefacts import contract_from_folder
from ..encoder import Encoder
from ..ort import contract_from_metadata, make_ort_session, parse_device, session_device


class OnnxEncoder(Encoder):
    """Runs ``encoder.onnx`` (input ``pixels`` (B, 3, H, W), outputs ``cls``, ``patch_tokens``)."""

    backend = "onnx"

    def __init__(self, onnx_path: str | Path, device: str | None = None, *, threads: int | None = None) -> None:
        onnx_path = Path(onnx_path)
        session = make_ort_session(onnx_path, device, threads=threads)
        meta = session.get_modelmeta().custom_metadata_map
        contract = contract_from_metadata(meta, onnx_path) or contract_from_folder(onnx_path.parent)
        if contract is None:
            raise CheckpointError(
                f"{onnx_path}: no encoder contract (no 'vidistill.contract' metadata and no config.json "
                "beside it): export it with `vidistill export`, which records the preprocessing"
            )
        where, index = session_device(session), parse_device(device)[1]
        super().__init__(contract, where if where == "cpu" or not index else f"{where}:{index}", str(onnx_path))
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
        h, w = contract.image_size
        if len(shape) != 4 or any(isinstance(d, int) and d != e for d, e in zip(shape[1:], (3, h, w), strict=True)):
            raise CheckpointError(f"{path}: input {name!r} has shape {shape}, the contract says (B, 3, {h}, {w})")
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
