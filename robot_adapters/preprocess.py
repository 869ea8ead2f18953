"""Image input: strict validation, one resize per image (cv2), one normalisation op per batch.

Accepted inputs (the dtype decides the layout, nothing is guessed from values):

* ``uint8`` images, channels last (HWC, RGB, 0..255): one ``(H, W, 3)`` or a batch
  ``(N, H, W, 3)``; numpy arrays, torch tensors, PIL images, or a list of those (sizes may differ).
  This is what gymnasium / LeRobot environments and cameras return.
* floating images, channels first (CHW, RGB, in [0, 1]): ``(3, H, W)`` or ``(N, 3, H, W)``;
  numpy or torch (LeRobot's policy-side convention). Do NOT normalise them yourself: the
  encoder applies the mean/std of its own contract, and a value outside [-0.001, 1.001] is
  rejected because it means the images are already normalised or still 0..255.

Anything else (int64, RGBA, grayscale, HWC floats, CHW uint8) raises ValueError naming what was
received and what is expected. Images whose size differs from the contract's ``image_size`` are
resized to ``image_size x image_size`` (aspect ratio not kept, nothing cropped, so the whole
field of view is seen) with ``cv2.INTER_AREA`` when shrinking and ``cv2.INTER_LINEAR`` when
enlarging; then ``(x / 255 - mean) / std`` per channel, NCHW float32.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from vidistill.contract import EncoderContract

HWC_UINT8 = "uint8 HWC"
CHW_FLOAT = "float CHW"

EXPECTED = (
    "expected uint8 RGB images channels-last, (H, W, 3) or (N, H, W, 3), values 0..255; "
    "or floating RGB images channels-first, (3, H, W) or (N, 3, H, W), values in [0, 1]"
)

_RANGE_EPS = 1e-3


def is_torch(x: Any) -> bool:
    """True for a torch.Tensor, without importing torch."""
    return type(x).__module__.startswith("torch") and hasattr(x, "dtype") and hasattr(x, "device")


def _is_pil(x: Any) -> bool:
    return type(x).__module__.startswith("PIL.") and hasattr(x, "convert") and hasattr(x, "size")


def _kind(x: Any) -> str:
    """'uint8' / 'float' / the offending dtype name, for numpy and torch alike."""
    if is_torch(x):
        import torch

        if x.dtype == torch.uint8:
            return "uint8"
        return "float" if x.is_floating_point() else str(x.dtype)
    dtype = x.dtype
    if dtype == np.uint8:
        return "uint8"
    return "float" if np.issubdtype(dtype, np.floating) else str(dtype)


def _describe(x: Any) -> str:
    lib = "torch.Tensor" if is_torch(x) else type(x).__name__
    return f"{lib} of dtype {x.dtype} and shape {tuple(x.shape)}"


def _fail(x: Any, why: str) -> ValueError:
    return ValueError(f"encode: got {_describe(x)}: {why}; {EXPECTED}")


@dataclass
class ImageBatch:
    """Validated images: ``data`` is one stacked array/tensor (N, ...) or a list of single images."""

    data: Any
    layout: str  # HWC_UINT8 or CHW_FLOAT
    count: int
    sizes: tuple[tuple[int, int], ...]  # distinct (H, W) seen

    @property
    def torch(self) -> bool:
        return is_torch(self.data) or (isinstance(self.data, list) and bool(self.data) and is_torch(self.data[0]))

    def needs_resize(self, image_size: int) -> bool:
        return any(s != (image_size, image_size) for s in self.sizes)


def _check_one_array(x: Any) -> tuple[str, bool]:
    """Validate one array/tensor; returns (layout, batched)."""
    kind = _kind(x)
    shape = tuple(x.shape)
    if kind == "uint8":
        if len(shape) not in (3, 4):
            raise _fail(x, "a uint8 image needs 3 dims (H, W, 3) or 4 dims (N, H, W, 3)")
        if shape[-1] != 3:
            if shape[-3] == 3:
                raise _fail(x, "uint8 images must be channels-last (HWC); this looks channels-first "
                            "(transpose to (..., H, W, 3), or pass float CHW in [0, 1])")
            if shape[-1] == 4:
                raise _fail(x, "4 channels (RGBA?): drop the alpha channel with img[..., :3]")
            raise _fail(x, f"the last dim must be 3 RGB channels, got {shape[-1]}")
        return HWC_UINT8, len(shape) == 4
    if kind == "float":
        if len(shape) not in (3, 4):
            raise _fail(x, "a float image needs 3 dims (3, H, W) or 4 dims (N, 3, H, W)")
        if shape[-3] != 3:
            if shape[-1] == 3:
                raise _fail(x, "float images must be channels-first (CHW) in [0, 1]; this looks "
                            "channels-last (pass uint8 HWC, or transpose to (..., 3, H, W))")
            raise _fail(x, f"dim -3 must be 3 RGB channels, got {shape[-3]}")
        return CHW_FLOAT, len(shape) == 4
    raise _fail(x, f"dtype {x.dtype} is not supported (convert 0..255 images with .astype(np.uint8))")


def _check_float_range(x: Any) -> None:
    if is_torch(x):
        lo, hi = float(x.min()), float(x.max())
    else:
        lo, hi = float(np.min(x)), float(np.max(x))
    if hi > 1.0 + _RANGE_EPS:
        raise _fail(x, f"float images must be in [0, 1], max is {hi:.4g} (pass 0..255 images as uint8 HWC)")
    if lo < -_RANGE_EPS:
        raise _fail(x, f"float images must be in [0, 1], min is {lo:.4g}: they look already normalised; "
                    "pass raw images, the encoder applies its own mean/std")


def _hw(x: Any, layout: str) -> tuple[int, int]:
    s = tuple(x.shape)
    return (int(s[-3]), int(s[-2])) if layout == HWC_UINT8 else (int(s[-2]), int(s[-1]))


def as_image_batch(images: Any) -> ImageBatch:
    """Validate ``images`` (see the module docstring) and return them as one batch."""
    if _is_pil(images):
        images = [images]
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError(f"encode: got an empty {type(images).__name__}; {EXPECTED}")
        items = [np.asarray(im.convert("RGB")) if _is_pil(im) else im for im in images]
        items = [im if (is_torch(im) or isinstance(im, np.ndarray)) else np.asarray(im) for im in items]
        layouts = set()
        for im in items:
            layout, batched = _check_one_array(im)
            if batched:
                raise _fail(im, "a list must hold single images, not batches")
            layouts.add(layout)
        if len(layouts) > 1 or len({is_torch(im) for im in items}) > 1:
            raise ValueError("encode: a list of images must be all uint8 HWC or all float CHW, all numpy or all torch")
        layout = layouts.pop()
        if layout == CHW_FLOAT:
            for im in items:
                _check_float_range(im)
        sizes = tuple(sorted({_hw(im, layout) for im in items}))
        if len(sizes) == 1:  # one size: stack once, then the batch path
            if is_torch(items[0]):
                import torch

                data = torch.stack(list(items))
            else:
                data = np.stack(items)
            return ImageBatch(data, layout, len(items), sizes)
        return ImageBatch(items, layout, len(items), sizes)
    if not (is_torch(images) or isinstance(images, np.ndarray)):
        raise ValueError(f"encode: got {type(images).__name__}; {EXPECTED} (numpy, torch, PIL or a list of them)")
    layout, batched = _check_one_array(images)
    if layout == CHW_FLOAT:
        _check_float_range(images)
    data = images if batched else images[None]
    return ImageBatch(data, layout, int(data.shape[0]), (_hw(data, layout),))


def interpolation_for(src_hw: tuple[int, int], size: int) -> int:
    """cv2.INTER_AREA when shrinking (anti-aliased), cv2.INTER_LINEAR when enlarging."""
    return cv2.INTER_AREA if src_hw[0] >= size and src_hw[1] >= size else cv2.INTER_LINEAR


@functools.lru_cache(maxsize=64)
def resize_matrix(src: int, dst: int, area: bool) -> np.ndarray:
    """(dst, src) float32 matrix ``R`` with ``resized = R_h @ image @ R_w.T`` (one axis at a time).

    ``area=True`` reproduces cv2.INTER_AREA (each output pixel averages the input span it covers,
    fractional pixels weighted by overlap); ``area=False`` reproduces cv2.INTER_LINEAR (half-pixel
    centres, edge clamped). Used by the torch backend to resize on the GPU exactly like cv2.
    """
    scale = src / dst
    mat = np.zeros((dst, src), dtype=np.float64)
    for i in range(dst):
        if area:
            lo, hi = i * scale, (i + 1) * scale
            for j in range(int(np.floor(lo)), min(int(np.ceil(hi)), src)):
                mat[i, j] = (min(hi, j + 1) - max(lo, j)) / scale
        else:
            x = max((i + 0.5) * scale - 0.5, 0.0)
            j0 = int(np.floor(x))
            w1 = x - j0
            if j0 >= src - 1:
                j0, w1 = src - 1, 0.0
            mat[i, j0] += 1.0 - w1
            if w1 > 0:
                mat[i, j0 + 1] += w1
    return mat.astype(np.float32)


def _resize_hwc(img: np.ndarray, size: int) -> np.ndarray:
    if img.shape[0] == size and img.shape[1] == size:
        return img
    return cv2.resize(np.ascontiguousarray(img), (size, size), interpolation=interpolation_for(img.shape[:2], size))


def normaliser(contract: EncoderContract, max_value: float) -> tuple[np.ndarray, np.ndarray]:
    """(scale, bias) per channel with ``(x / max_value - mean) / std == x * scale + bias``."""
    mean = np.asarray(contract.mean, dtype=np.float64)
    std = np.asarray(contract.std, dtype=np.float64)
    return (1.0 / (max_value * std)).astype(np.float32), (-mean / std).astype(np.float32)


def preprocess_numpy(batch: ImageBatch, contract: EncoderContract) -> np.ndarray:
    """An :class:`ImageBatch` -> contiguous (N, 3, S, S) float32, normalised per the contract."""
    size = contract.image_size
    data = batch.data
    if batch.torch:  # ORT / TensorRT take host arrays
        data = [t.detach().cpu().numpy() for t in data] if isinstance(data, list) else data.detach().cpu().numpy()
    if batch.layout == HWC_UINT8:
        if batch.needs_resize(size):
            hwc = np.empty((batch.count, size, size, 3), dtype=np.uint8)
            for i in range(batch.count):
                hwc[i] = _resize_hwc(data[i], size)
        else:
            hwc = data
        nchw = hwc.transpose(0, 3, 1, 2)  # a view of uint8: the float copy below does the layout
        scale, bias = normaliser(contract, 255.0)
    else:
        if batch.needs_resize(size):
            nchw = np.empty((batch.count, 3, size, size), dtype=np.float32)
            for i in range(batch.count):
                hwc = _resize_hwc(np.asarray(data[i], dtype=np.float32).transpose(1, 2, 0), size)
                nchw[i] = hwc.transpose(2, 0, 1)
        else:
            nchw = data
        scale, bias = normaliser(contract, 1.0)
    out = np.empty((batch.count, 3, size, size), dtype=np.float32)
    np.multiply(nchw, scale[:, None, None], out=out, casting="unsafe")
    out += bias[:, None, None]
    return out
