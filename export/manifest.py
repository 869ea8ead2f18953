"""``manifest.json``: what an export folder holds, how it was checked, with which tools."""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from vidistill.contract import EncoderContract

from .defaults import MANIFEST_NAME

FORMAT = "vidistill-export"
FORMAT_VERSION = 1
TOOLS = ("vidistill", "torch", "timm", "onnx", "onnxruntime", "onnxscript", "safetensors", "tensorrt", "numpy")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def describe_file(path: Path, **extra: Any) -> dict[str, Any]:
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size, **extra}


def tool_versions() -> dict[str, str]:
    """Installed versions of the tools that made or checked the artefacts (absent ones left out)."""
    versions = {"python": platform.python_version()}
    for name in TOOLS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            module = sys.modules.get(name)  # e.g. tensorrt installed without dist metadata
            if module is not None and hasattr(module, "__version__"):
                versions[name] = str(module.__version__)
    return versions


def build_manifest(
    contract: EncoderContract,
    source_checkpoint: Path,
    artifacts: dict[str, dict[str, Any]],
    parity: dict[str, Any],
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source_checkpoint": str(Path(source_checkpoint).resolve()),
        "contract": contract.to_dict(),
        "artifacts": artifacts,
        "parity": parity,
        "tools": tool_versions(),
    }


def write_manifest(folder: Path, manifest: dict[str, Any]) -> Path:
    path = folder / MANIFEST_NAME
    path.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return path
