"""Find an encoder's artefacts on disk and read its contract from them (pure Python, no torch).

An export folder holds ``encoder.safetensors`` + ``config.json`` (timm config with the contract
under ``"vidistill"``), ``encoder.onnx`` (contract in its ``vidistill.contract`` metadata),
optionally ``encoder.engine`` (TensorRT) and ``manifest.json``. A run folder holds
``checkpoint.pt`` and, once exported, ``export/`` (searched too: a run folder then serves its
ONNX/TensorRT artefacts, with the checkpoint as the torch fallback).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from vidistill.contract import EncoderContract
from vidistill.errors import CheckpointError

from .names import (
    CHECKPOINT_NAME,
    CONFIG_NAME,
    CONTRACT_KEY,
    ENGINE_NAME,
    EXPORT_DIR,
    MANIFEST_NAME,
    METADATA_KEY,
    ONNX_NAME,
    SAFETENSORS_NAME,
)
from .ort import contract_from_metadata, read_onnx_metadata


@dataclass(frozen=True)
class Artefacts:
    """What was found for one ``path``; a field is None when that artefact is absent."""

    path: Path
    onnx: Path | None = None
    engine: Path | None = None
    safetensors: Path | None = None
    checkpoint: Path | None = None

    def describe(self) -> str:
        found = [f"{k}={getattr(self, k)}" for k in ("engine", "onnx", "safetensors", "checkpoint") if getattr(self, k)]
        return ", ".join(found) if found else "nothing usable"

    @property
    def kind(self) -> str:
        """What the path is: "run" (a folder with checkpoint.pt), "checkpoint" (a .pt file),
        "export" (a folder with a vidistill contract), "hub folder" (timm's hub layout:
        config.json without one), "safetensors" / "onnx" / "engine" (one file), or "empty"."""
        if self.path.is_file():
            return next(k for k in ("checkpoint", "safetensors", "onnx", "engine") if getattr(self, k))
        if self.checkpoint is not None:
            return "run"
        if contract_from_folder(self.path) is not None or self.onnx or self.engine:
            return "export"
        if (self.path / CONFIG_NAME).is_file():
            return "hub folder"
        return "empty"


def _one(folder: Path, name: str, pattern: str) -> Path | None:
    exact = folder / name
    if exact.is_file():
        return exact
    matches = sorted(p for p in folder.glob(pattern) if p.is_file())
    return matches[0] if len(matches) == 1 else None


def _scan_folder(folder: Path) -> Artefacts:
    ckpt = folder / CHECKPOINT_NAME
    return Artefacts(
        path=folder,
        onnx=_one(folder, ONNX_NAME, "*.onnx"),
        engine=_one(folder, ENGINE_NAME, "*.engine"),
        safetensors=_one(folder, SAFETENSORS_NAME, "*.safetensors"),
        checkpoint=ckpt if ckpt.is_file() else None,
    )


def find_artefacts(path: str | Path) -> Artefacts:
    """Artefacts for a folder (export or run) or a single file (.onnx, .engine, .safetensors, .pt)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder (expected an export folder, a run folder, "
                              "or an .onnx / .engine / .safetensors / .pt file)")
    if path.is_file():
        suffix = path.suffix.lower()
        key = {".onnx": "onnx", ".engine": "engine", ".plan": "engine", ".trt": "engine",
               ".safetensors": "safetensors", ".pt": "checkpoint", ".pth": "checkpoint"}.get(suffix)
        if key is None:
            raise CheckpointError(f"{path}: unknown artefact type {suffix!r} (expected .onnx, .engine, "
                                  ".safetensors or .pt, or a folder)")
        return Artefacts(path=path, **{key: path})
    found = _scan_folder(path)
    export = path / EXPORT_DIR
    if export.is_dir():
        sub = _scan_folder(export)
        found = Artefacts(
            path=path,
            onnx=found.onnx or sub.onnx,
            engine=found.engine or sub.engine,
            safetensors=found.safetensors or sub.safetensors,
            checkpoint=found.checkpoint,
        )
    return found


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: cannot be read as JSON: {e}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def _contract_from_json_file(path: Path) -> EncoderContract | None:
    if not path.is_file():
        return None
    data = read_json(path)
    for candidate in (data.get(CONTRACT_KEY), data.get("contract"), (data.get("pretrained_cfg") or {}).get(CONTRACT_KEY)):
        if isinstance(candidate, dict):
            try:
                return EncoderContract.from_dict(candidate)
            except (TypeError, ValueError) as e:
                raise CheckpointError(f"{path}: the '{CONTRACT_KEY}' entry is not a valid encoder contract: {e}") from None
    return None


def contract_from_folder(folder: Path) -> EncoderContract | None:
    """The contract in ``config.json`` or ``manifest.json`` of an export folder, if any."""
    for name in (CONFIG_NAME, MANIFEST_NAME):
        contract = _contract_from_json_file(folder / name)
        if contract is not None:
            return contract
    return None


def contract_for_engine(engine: Path) -> EncoderContract:
    """A TensorRT engine carries no metadata: its contract comes from the files beside it."""
    folder = engine.parent
    sidecar = _contract_from_json_file(engine.with_suffix(engine.suffix + ".json"))
    contract = sidecar or contract_from_folder(folder)
    if contract is None:
        onnx_path = _one(folder, ONNX_NAME, "*.onnx")
        if onnx_path is not None:
            contract = contract_from_metadata(read_onnx_metadata(onnx_path), onnx_path)
    if contract is None:
        raise CheckpointError(
            f"{engine}: no encoder contract found beside this TensorRT engine (expected {CONFIG_NAME} or "
            f"{MANIFEST_NAME} with a '{CONTRACT_KEY}' entry, or {ONNX_NAME} with '{METADATA_KEY}' "
            "metadata): keep the engine in its export folder"
        )
    return contract
