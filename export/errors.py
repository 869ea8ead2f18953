"""Export errors: user-facing (the CLI prints the message, no traceback)."""

from __future__ import annotations

from vidistill.errors import VidistillError
from vidistill.runtime.errors import MissingBackendError  # noqa: F401  (TensorRT/CUDA unusable here)


class ExportError(VidistillError):
    """An export step failed: the artefact could not be made or does not match PyTorch."""

    exit_code = 3


class ParityError(ExportError):
    """An artefact's outputs differ from the PyTorch teacher beyond tolerance."""


class GraphCheckError(ExportError):
    """The ONNX graph has ops or patterns that TensorRT's parser (or a clean export) rejects."""
