"""Frozen encoders for evaluation come from the runtime: the same loader, backends and resize rule
a robot uses (``vidistill eval probe EXPORT --backend onnx`` probes exactly the ONNX artefact).

This module keeps what is eval's own: reading image files, and bringing label and depth maps to
the region the encoder sees. Images go to the encoder as they are: its contract's rule (crop /
letterbox, ``vidistill.runtime.preprocess``) places them, exactly as on a robot; a label map is
cropped or padded (with "ignore") by the same placement at its own resolution, so a probe scores
the region the encoder sees. Encoders are loaded by :func:`vidistill.runtime.load_encoder`.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from vidistill.errors import VidistillError
from vidistill.runtime.encoder import Encoder
from vidistill.runtime.preprocess import fit_to_aspect


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB; a clear error when it cannot be decoded."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise VidistillError(f"{path}: cannot be read as an image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def to_input_aspect(encoder: Encoder, img: np.ndarray, label: bool = False) -> np.ndarray:
    """``img`` at its own resolution, cropped or padded to the encoder's input aspect where its
    contract's rule places a frame of that size: a label / depth map (``label=True``, padded
    with 0 = ignore / invalid), or an image to show (padded with the mean colour, which the
    encoder's border is). Images to ENCODE are passed as they are: the encoder places them."""
    c = encoder.contract
    fill = 0 if label else np.round(np.asarray(c.mean) * 255).astype(img.dtype)
    return fit_to_aspect(img, encoder.image_size, c.resize, fill)


def resize_nearest(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Label / depth maps to (H, W) with nearest-neighbour (no new label values)."""
    h, w = size
    if img.shape[:2] == (h, w):
        return img
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_NEAREST)
