"""Image input: strict validation, the contract's resize rule, one normalisation per batch.

Accepted inputs (the dtype decides the layout, nothing is guessed from values):

* ``uint8`` images, channels last (HWC, RGB, 0..255): one ``(H, W, 3)`` or a batch
  ``(N, H, W, 3)``; numpy arrays, torch tensors, PIL images, or a list of those (sizes may differ).
  This is what gymnasium / LeRobot environments and cameras return.
* floating images, channels first (CHW, RGB, in [0, 1]): ``(3, H, W)`` or ``(N, 3, H, W)``;
  numpy or torch (LeRobot's policy-side convention). Do NOT normalise them yourself: the
  encoder applies the mean/std of its own contract, and a value outside [-0.001, 1.001] is
  rejected because it means the images are already normalised or still 0..255.

Anything else (int64, RGBA, grayscale, HWC floats, CHW uint8) raises ValueError naming what was
received and what is expected.

The resize rule is the contract's (``resize`` and ``interpolation``), the same for every backend,
eval and the adapters: :func:`fit_box` says which part of the frame is used and where it lands
(crop: the largest centred box of the encoder's aspect; letterbox: the whole frame, centred,
the border 0 after normalisation; stretch: the whole frame to the whole input), then the kernel
is PIL's antialiased bicubic (or bilinear) -- the one training's torchvision resize uses. Host
arrays are resized by PIL itself (in float); torch tensors on their device by
:func:`resize_matrix`, which computes PIL's coefficients, so both paths give the same numbers.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

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

    def needs_resize(self, image_size: tuple[int, int]) -> bool:
        return any(s != tuple(image_size) for s in self.sizes)


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


# -- the resize rule ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Source box ``[y0:y1, x0:x1]`` resized to ``(h, w)`` and pasted at ``(top, left)`` of the input."""

    y0: int
    y1: int
    x0: int
    x1: int
    top: int
    left: int
    h: int
    w: int

    @property
    def fills(self) -> bool:
        return self.top > 0 or self.left > 0


def fit_box(src_hw: tuple[int, int], dst_hw: tuple[int, int], mode: str) -> Placement:
    """Where a ``src_hw`` frame goes in a ``dst_hw`` input under ``mode`` (crop / letterbox / stretch)."""
    sh, sw = int(src_hw[0]), int(src_hw[1])
    dh, dw = int(dst_hw[0]), int(dst_hw[1])
    if mode == "stretch" or sh * dw == sw * dh:
        return Placement(0, sh, 0, sw, 0, 0, dh, dw)
    if mode == "crop":
        if sw * dh > sh * dw:  # wider than the input: keep the full height
            cw = max(1, round(sh * dw / dh))
            x0 = (sw - cw) // 2
            return Placement(0, sh, x0, x0 + cw, 0, 0, dh, dw)
        ch = max(1, round(sw * dh / dw))
        y0 = (sh - ch) // 2
        return Placement(y0, y0 + ch, 0, sw, 0, 0, dh, dw)
    if mode == "letterbox":
        if sw * dh > sh * dw:  # wider: full width, bands above and below
            h = max(1, round(sh * dw / sw))
            return Placement(0, sh, 0, sw, (dh - h) // 2, 0, h, dw)
        w = max(1, round(sw * dh / sh))
        return Placement(0, sh, 0, sw, 0, (dw - w) // 2, dh, w)
    raise ValueError(f"resize mode {mode!r}: expected crop, letterbox or stretch")


def _bicubic(x: np.ndarray) -> np.ndarray:
    a = -0.5  # PIL's (and torch's antialiased) Keys cubic
    x = np.abs(x)
    return np.where(x < 1, ((a + 2) * x - (a + 3)) * x * x + 1, np.where(x < 2, (((x - 5) * x + 8) * x - 4) * a, 0.0))


def _bilinear(x: np.ndarray) -> np.ndarray:
    return np.clip(1.0 - np.abs(x), 0.0, None)


_KERNELS = {"bicubic": (_bicubic, 2.0), "bilinear": (_bilinear, 1.0)}


@functools.lru_cache(maxsize=128)
def resize_matrix(src: int, dst: int, interpolation: str = "bicubic") -> np.ndarray:
    """(dst, src) float32 ``R`` with ``resized = R_h @ image @ R_w.T``: PIL's antialiased
    coefficients (``precompute_coeffs`` in Pillow's Resample.c), so the device path computes
    what PIL computes on the host."""
    kernel, support = _KERNELS[interpolation]
    scale = src / dst
    filterscale = max(scale, 1.0)
    support *= filterscale
    mat = np.zeros((dst, src), dtype=np.float64)
    for i in range(dst):
        center = (i + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), src)
        j = np.arange(lo, hi)
        w = kernel((j - center + 0.5) / filterscale)
        total = w.sum()
        mat[i, lo:hi] = w / total if total != 0 else w
    return mat.astype(np.float32)


def _pil_filter(interpolation: str) -> int:
    from PIL import Image

    return {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}[interpolation]


def resize_host(img: np.ndarray, place: Placement, interpolation: str) -> np.ndarray:
    """One HWC image: its ``place`` box resized to ``(place.h, place.w)``, float32 (PIL, per channel).

    PIL's float ("F") path, not its 8-bit one: the 8-bit path rounds between its two passes and
    picks their order itself, which a device implementation cannot follow exactly; in float
    both paths compute the same numbers.
    """
    from PIL import Image

    img = img[place.y0 : place.y1, place.x0 : place.x1]  # the box alone, as training crops it
    if img.shape[:2] == (place.h, place.w):
        return img.astype(np.float32)
    size, resample = (place.w, place.h), _pil_filter(interpolation)
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(img[..., c], dtype=np.float32), mode="F").resize(size, resample))
        for c in range(img.shape[-1])
    ]
    return np.stack(channels, axis=-1)


def normaliser(contract: EncoderContract, max_value: float) -> tuple[np.ndarray, np.ndarray]:
    """(scale, bias) per channel with ``(x / max_value - mean) / std == x * scale + bias``."""
    mean = np.asarray(contract.mean, dtype=np.float64)
    std = np.asarray(contract.std, dtype=np.float64)
    return (1.0 / (max_value * std)).astype(np.float32), (-mean / std).astype(np.float32)


def _normalise_into(out: np.ndarray, nchw: Any, scale: np.ndarray, bias: np.ndarray) -> None:
    np.multiply(nchw, scale[:, None, None], out=out, casting="unsafe")
    out += bias[:, None, None]


def preprocess_numpy(batch: ImageBatch, contract: EncoderContract) -> np.ndarray:
    """An :class:`ImageBatch` -> contiguous (N, 3, H, W) float32 per the contract (host arrays)."""
    h, w = contract.image_size
    data = batch.data
    if batch.torch:  # ORT / TensorRT take host arrays
        data = [t.detach().cpu().numpy() for t in data] if isinstance(data, list) else data.detach().cpu().numpy()
    max_value = 255.0 if batch.layout == HWC_UINT8 else 1.0
    scale, bias = normaliser(contract, max_value)
    if not batch.needs_resize((h, w)):
        out = np.empty((batch.count, 3, h, w), dtype=np.float32)
        _normalise_into(out, data.transpose(0, 3, 1, 2) if batch.layout == HWC_UINT8 else data, scale, bias)
        return out
    out = np.zeros((batch.count, 3, h, w), dtype=np.float32)  # letterbox borders: 0 = the mean colour
    for i in range(batch.count):
        img = data[i] if batch.layout == HWC_UINT8 else np.asarray(data[i], np.float32).transpose(1, 2, 0)
        place = fit_box(img.shape[:2], (h, w), contract.resize)
        resized = resize_host(img, place, contract.interpolation)
        region = out[i : i + 1, :, place.top : place.top + place.h, place.left : place.left + place.w]
        _normalise_into(region, resized.transpose(2, 0, 1)[None], scale, bias)
    return out


def describe_rule(contract: EncoderContract) -> str:
    """The contract's resize rule in words (for warnings and docs)."""
    how = {"crop": "centre-cropped to its aspect, then resized", "letterbox": "resized to fit, borders filled",
           "stretch": "resized (aspect not kept)"}[contract.resize]
    return f"{how} with antialiased {contract.interpolation}"


def fit_to_aspect(img: np.ndarray, dst_hw: tuple[int, int], mode: str, fill: Any = 0) -> np.ndarray:
    """``img`` (H, W, ...) at its own resolution, cropped or padded (``fill``) to the aspect of
    ``dst_hw`` where :func:`fit_box` places a frame of its size: for what must line up with the
    encoder's input without being encoded (eval's label and depth maps, pictures of it), so a
    probe scores the region the encoder sees. Images to encode go through
    :func:`preprocess_numpy` (resized, then placed), never through this."""
    h, w = img.shape[:2]
    if mode == "stretch":
        return img
    if mode == "crop":
        p = fit_box((h, w), dst_hw, mode)
        return img[p.y0 : p.y1, p.x0 : p.x1]
    dh, dw = int(dst_hw[0]), int(dst_hw[1])
    if h * dw == w * dh:
        return img
    # The input's aspect at this image's own scale; fit_box places the image in it unscaled.
    th, tw = (round(w * dh / dw), w) if w * dh > h * dw else (h, round(h * dw / dh))
    p = fit_box((h, w), (th, tw), mode)
    out = np.empty((th, tw, *img.shape[2:]), dtype=img.dtype)
    out[...] = fill
    out[p.top : p.top + p.h, p.left : p.left + p.w] = img
    return out
