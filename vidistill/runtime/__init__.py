"""One runtime for an exported (or checkpointed) encoder: load artefacts, run them, one preprocessing.

Export's parity checks, ``vidistill eval`` and the robot adapters all go through here, so the
numbers in ``manifest.json`` certify what a robot runs. Imports no training code; torch is
needed only by the torch backend (an ONNX or TensorRT robot runs without it).

Modules, one idea each: ``names`` (artefact file names, metadata keys), ``artefacts`` (what a path is,
its artefacts, the contract), ``preprocess`` (validation, the contract's resize rule, normalisation),
``features`` (what an encoder returns), ``encoder`` (the interface), ``ort`` (the ONNX Runtime
session factory), ``timm_vit`` (the one timm path: build, token split, position-embedding
resample, hub config; training uses it too), ``torch_model`` (the timm module from a contract at
any size), ``checkpoints`` (read a training checkpoint), ``loader`` (``load_encoder``). The
encoders themselves, one module per backend: ``backends.torch``, ``backends.onnx``,
``backends.tensorrt`` (probe + runner).

    from vidistill.runtime import load_encoder
    encoder = load_encoder("runs/x/export")        # TensorRT > ONNX Runtime > torch
    feats = encoder.encode(frames_uint8_hwc)        # Features: cls (N, D), patch_tokens (N, P, D)
"""

from __future__ import annotations

from vidistill.lazy_exports import lazy_exports

_EXPORTS = {
    "load_encoder": "loader",
    "choose_backend": "loader",
    "Encoder": "encoder",
    "Features": "features",
    "tokens_to_grid": "features",
    "grid_to_tokens": "features",
    "MissingBackendError": "errors",
    "find_artefacts": "artefacts",
    "make_ort_session": "ort",
    "tensorrt_problem": "backends.tensorrt",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
