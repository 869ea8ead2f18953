"""Runtime errors (user-facing: the CLI prints the message, no traceback)."""

from __future__ import annotations

from vidistill.errors import VidistillError


class MissingBackendError(VidistillError, ImportError):
    """A runtime the artefact needs (onnxruntime, TensorRT, torch, a GPU provider) is not installed
    or not usable here. The message names what to install; also an ImportError, so
    ``except ImportError`` works."""
