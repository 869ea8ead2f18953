"""Serve a trained encoder to robot code: gymnasium (single and vector) wrappers,
Stable-Baselines3 glue and a VLA vision tower, on top of :mod:`vidistill.runtime`, which loads
and runs the artefacts (``load_encoder``, ``Encoder``, ``Features`` are imported from there).

Everything is imported lazily: ``import vidistill.robot_adapters`` costs nothing, and torch is
only imported by what needs it (the torch backend, ``VisionTower``, the SB3 module), so a robot
running an ONNX or TensorRT artefact does not need torch. Nothing here imports training code.

    from vidistill.runtime import load_encoder
    from vidistill.robot_adapters import FeatureObservationWrapper
    encoder = load_encoder("runs/my_run/export")          # TensorRT > ORT CUDA > ORT CPU > torch
    feats = encoder.encode(frames_uint8_hwc)               # Features: cls (N, D), patch_tokens (N, P, D)
    env = FeatureObservationWrapper(env, encoder, output="grid")
"""

from __future__ import annotations

from vidistill.lazy_exports import lazy_exports

_EXPORTS = {
    "FeatureObservationWrapper": "gym_wrapper",
    "VectorFeatureObservationWrapper": "vector_wrapper",
    "SB3FeatureVecEnvWrapper": "sb3",
    "GridFeaturesExtractor": "sb3",
    "VisionTower": "vision_tower",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
