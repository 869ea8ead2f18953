"""Views made on the training device, batched (``data.views_on: device``).

The worker path (:mod:`vidistill.data.views`) renders every view of a clip in the DataLoader
worker: ~23 small crops, resizes and colour ops a clip at cpu-tiny sizes, each a separate call
(1.5 ms a clip, twice the clip's decoding). Here the worker only decodes, cuts the clip's
pre-crop region out of its frames and draws the same :class:`ViewParams` from the same
generator; the trainer renders the views of the whole batch on the device in a few batched
calls:

* geometry: ONE ``torchvision.ops.roi_align`` per view size over all views of the batch (each
  box its own crop; ``sampling_ratio=-1`` averages ceil(box/size)² bilinear samples per output
  pixel, so a downscale is antialiased like the worker's bicubic-antialias resize, not aliased),
  then the flips;
* colour: DINO's jitter in each view's own random order, grayscale, Gaussian blur (one grouped
  convolution, each view its own kernel), solarize, in float (torchvision's float formulas);
  which views an op touches is decided on the host from the parameters, so there is no host
  sync on the device.

Not bit-identical to the worker path: the resampling filter differs (bilinear box averaging vs
bicubic antialias) and nothing is rounded to 8 bits between ops. The tests bound the difference
(tests/test_device_views.py); the views' statistics are DINO's either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from vidistill.config import DataConfig
from vidistill.data.views import SOLARIZE_THRESHOLD, Normalise, Photometric, ViewParams, _ViewBuilder

# Colour parameter columns of ViewSet.colour, in this order.
_COLOUR = ("jitter", "order0", "order1", "order2", "order3", "brightness", "contrast", "saturation", "hue",
           "gray", "blur_sigma", "solarize")
_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601-2 luma, as torchvision and PIL


@dataclass
class ViewSet:
    """The views of one size, as tensors: ``frame`` (..., V) which frame of the clip, ``box``
    (..., V, 4) top, left, height, width in the clip's region, ``flip`` (..., V), ``colour``
    (..., V, 12) the :class:`Photometric` columns (``_COLOUR``)."""

    frame: torch.Tensor
    box: torch.Tensor
    flip: torch.Tensor
    colour: torch.Tensor

    @classmethod
    def of(cls, frames: Sequence[int], boxes, flips: Sequence[bool], colour: Photometric, region) -> ViewSet:
        c = colour
        table = np.column_stack([c.jitter, c.order, c.brightness, c.contrast, c.saturation, c.hue, c.gray,
                                 c.blur_sigma, c.solarize]).astype(np.float32)
        return cls(
            frame=torch.tensor(list(frames), dtype=torch.int64),
            box=torch.tensor([[b.top - region.top, b.left - region.left, b.height, b.width] for b in boxes],
                             dtype=torch.float32),
            flip=torch.tensor(list(flips), dtype=torch.bool),
            colour=torch.from_numpy(table),
        )

    @classmethod
    def stack(cls, sets: Sequence[ViewSet]) -> ViewSet:
        return cls(*(torch.stack([getattr(s, f.name) for s in sets]) for f in fields(cls)))

    def pin_memory(self) -> ViewSet:
        return ViewSet(*(getattr(self, f.name).pin_memory() for f in fields(self)))


@dataclass
class RawClip:
    """What a worker sends for one clip: the frames cut to the clip's pre-crop region (every
    view lies inside it), uint8 (F, h, w, 3), and the views to make of them."""

    frames: np.ndarray
    globals: ViewSet
    locals: ViewSet
    local_groups: int

    @classmethod
    def of(cls, frames: Sequence[np.ndarray], params: ViewParams) -> RawClip:
        r = params.pre_crop
        region = np.stack([f[r.top : r.top + r.height, r.left : r.left + r.width] for f in frames])
        return cls(
            frames=region,
            globals=ViewSet.of(params.global_frames, params.global_boxes, params.global_flips,
                               params.global_color, r),
            locals=ViewSet.of(params.local_frames, params.local_boxes, params.local_flips, params.local_color, r),
            local_groups=params.local_groups,
        )


@dataclass
class RawClipBatch:
    """A batch of :class:`RawClip`: ``frames`` (B, F, H, W, 3) uint8, each clip's region at the
    top left, padded to the batch's largest by repeating its last row and column (what the
    bilinear sampler reads past a box's edge); ``clip_ids`` (B,)."""

    frames: torch.Tensor
    globals: ViewSet
    locals: ViewSet
    local_groups: int
    clip_ids: torch.Tensor

    def __len__(self) -> int:
        return self.frames.shape[0]

    def pin_memory(self) -> RawClipBatch:
        return RawClipBatch(self.frames.pin_memory(), self.globals.pin_memory(), self.locals.pin_memory(),
                            self.local_groups, self.clip_ids.pin_memory())


def collate_raw_clips(samples: Sequence[tuple[RawClip, int]]) -> RawClipBatch:
    n_frames = samples[0][0].frames.shape[0]
    height = max(c.frames.shape[1] for c, _ in samples)
    width = max(c.frames.shape[2] for c, _ in samples)
    frames = np.empty((len(samples), n_frames, height, width, 3), np.uint8)
    for out, (c, _) in zip(frames, samples, strict=True):
        h, w = c.frames.shape[1:3]
        out[:, :h, :w] = c.frames
        if w < width:  # repeat the last column, then the last row (its corner included)
            out[:, :h, w:] = out[:, :h, w - 1 : w]
        if h < height:
            out[:, h:] = out[:, h - 1 : h]
    return RawClipBatch(
        frames=torch.from_numpy(frames),
        globals=ViewSet.stack([c.globals for c, _ in samples]),
        locals=ViewSet.stack([c.locals for c, _ in samples]),
        local_groups=samples[0][0].local_groups,
        clip_ids=torch.tensor([cid for _, cid in samples], dtype=torch.int64),
    )


def raw_clip(views: _ViewBuilder, frames: Sequence[np.ndarray], rng: np.random.Generator) -> RawClip:
    """The worker's part: the same parameter draws as ``views(frames, rng)``, no pixels touched
    beyond the region cut."""
    h, w = frames[0].shape[:2]
    return RawClip.of(frames, views.sample(rng, h, w))


# ====================================================================================== colour
def _gray(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(-3)
    return (_GRAY_WEIGHTS[0] * r + _GRAY_WEIGHTS[1] * g + _GRAY_WEIGHTS[2] * b).unsqueeze(-3)


def _per_view(f: torch.Tensor) -> torch.Tensor:
    return f.view(-1, 1, 1, 1)


def adjust_brightness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return (x * _per_view(f)).clamp_(0, 1)


def adjust_contrast(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    mean = _gray(x).mean(dim=(-3, -2, -1), keepdim=True)
    f = _per_view(f)
    return (f * x + (1 - f) * mean).clamp_(0, 1)


def adjust_saturation(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    f = _per_view(f)
    return (f * x + (1 - f) * _gray(x)).clamp_(0, 1)


def adjust_hue(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Rotate each view's hue by ``f`` turns: RGB -> HSV, shift, HSV -> RGB (float, no rounding)."""
    value, _ = x.max(dim=-3)
    chroma = value - x.min(dim=-3).values
    r, g, b = x.unbind(-3)
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    # Hue in sixths of a turn, by which channel is the largest (r wins ties, then g).
    hue = torch.where(value == r, (g - b) / safe,
                      torch.where(value == g, 2 + (b - r) / safe, 4 + (r - g) / safe))
    hue = torch.where(chroma > 0, hue, torch.zeros_like(hue))
    hue = torch.remainder(hue / 6 + f.view(-1, 1, 1), 1.0) * 6
    # HSV -> RGB: channel n is v - c * clamp(min(k, 4 - k), 0, 1), k = (n + hue) mod 6, n = 5, 3, 1.
    n = torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    k = torch.remainder(n + hue.unsqueeze(-3), 6)
    return value.unsqueeze(-3) - chroma.unsqueeze(-3) * torch.minimum(k, 4 - k).clamp_(0, 1)


def to_gray(x: torch.Tensor) -> torch.Tensor:
    return _gray(x).expand_as(x).contiguous()


def gaussian_blur(x: torch.Tensor, sigma: np.ndarray) -> torch.Tensor:
    """Blur view v with σ = ``sigma[v]`` (> 0), kernel size 2⌈3σ⌉+1 and reflected borders, as the
    worker's: one grouped, separable convolution. A view's kernel is zero past its own radius,
    so padding every view to the largest radius leaves each view's result unchanged."""
    radii = np.ceil(3 * sigma).astype(np.int64)
    radius = int(radii.max())
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 * (offsets[None, :] / sigma[:, None]) ** 2)
    weights[np.abs(offsets)[None, :] > radii[:, None]] = 0
    weights /= weights.sum(axis=1, keepdims=True)
    v, c, h, w = x.shape
    kernel = torch.from_numpy(np.repeat(weights, c, axis=0)).to(x.device, x.dtype)  # (v*c, 2r+1)
    y = F.pad(x.reshape(1, v * c, h, w), (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, kernel.view(v * c, 1, 1, -1), groups=v * c)
    y = F.conv2d(y, kernel.view(v * c, 1, -1, 1), groups=v * c)
    return y.view(v, c, h, w)


def solarize(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= SOLARIZE_THRESHOLD / 255, 1 - x, x)


_JITTER_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def apply_photometric(x: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """Colour-augment views ``x`` (V, 3, h, w) in [0, 1], view v with the parameters ``colour[v]``
    (a host tensor, ``_COLOUR`` columns): the worker's order, each op on the views that draw it."""
    p = {name: colour[:, i].numpy() for i, name in enumerate(_COLOUR)}
    device = x.device

    def rows(mask: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.flatnonzero(mask)).to(device, non_blocking=True)

    jitter = p["jitter"] > 0
    factors = [torch.from_numpy(p[k]).to(device, non_blocking=True)
               for k in ("brightness", "contrast", "saturation", "hue")]
    for position in range(4):
        for op, fn in enumerate(_JITTER_OPS):
            mask = jitter & (p[f"order{position}"] == op)
            if mask.any():
                idx = rows(mask)
                x[idx] = fn(x[idx], factors[op][idx])
    for mask, fn in ((p["gray"] > 0, to_gray), (p["blur_sigma"] > 0, None), (p["solarize"] > 0, solarize)):
        if not mask.any():
            continue
        idx = rows(mask)
        x[idx] = fn(x[idx]) if fn is not None else gaussian_blur(x[idx], p["blur_sigma"][mask].astype(np.float64))
    return x


# ====================================================================================== render
class DeviceViews:
    """Renders a :class:`RawClipBatch` on ``device``: the model's normalised float input,
    ``globals`` (B, G, 3, H, W) and ``locals`` (B, Gl, L, 3, h, w), as the worker path's
    ``Normalise(batch.globals)`` / ``Normalise(batch.locals)`` would give."""

    def __init__(self, data: DataConfig, device: torch.device | str = "cpu", color: bool = True):
        self.global_size, self.local_size = data.global_size, data.local_size
        self.color = color
        self.normalise = Normalise(data.mean, data.std, device)
        self.device = torch.device(device)

    def __call__(self, batch: RawClipBatch) -> tuple[torch.Tensor, torch.Tensor]:
        b, n_frames = batch.frames.shape[:2]
        frames = batch.frames.to(self.device, non_blocking=True)
        frames = frames.permute(0, 1, 4, 2, 3).flatten(0, 1).float().div_(255)  # (B*F, 3, H, W)
        g = self.render(frames, n_frames, batch.globals, self.global_size)
        loc = self.render(frames, n_frames, batch.locals, self.local_size)
        return g.view(b, -1, *g.shape[1:]), loc.view(b, batch.local_groups, -1, *loc.shape[1:])

    def render(self, frames: torch.Tensor, n_frames: int, views: ViewSet, size: int) -> torch.Tensor:
        """The views of one size, (B*V, 3, size, size), normalised."""
        b, v = views.frame.shape
        clip = torch.arange(b).repeat_interleave(v)
        top, left, height, width = views.box.flatten(0, 1).unbind(-1)
        # roi_align's boxes: (frame row, x1, y1, x2, y2) in pixel edges (aligned=True: pixel i spans [i, i+1)).
        rois = torch.stack([(clip * n_frames + views.frame.flatten()).float(), left, top, left + width, top + height],
                           dim=1)
        x = roi_align(frames, rois.to(self.device, non_blocking=True), output_size=size, spatial_scale=1.0,
                      sampling_ratio=-1, aligned=True)
        flip = views.flip.flatten()
        if flip.any():
            idx = torch.from_numpy(np.flatnonzero(flip.numpy())).to(self.device, non_blocking=True)
            x[idx] = x[idx].flip(-1)
        if self.color:
            x = apply_photometric(x, views.colour.flatten(0, 1))
        return self.normalise.unit(x)
