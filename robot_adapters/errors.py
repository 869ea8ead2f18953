"""Adapter errors."""

from __future__ import annotations

from vidistill.errors import VidistillError


class MissingBackendError(VidistillError, ImportError):
    """The artefact needs a runtime (onnxruntime, TensorRT, torch) that is not installed or usable.

    The message names what to install. Also an ImportError, so ``except ImportError`` works.
    """
