"""The augmentation of docs/METHOD.md ("Augmentation"), and the plain-DINO views of the baselines.

Two builders turn a clip's decoded frames into views:

* :class:`ClipViews` (the method): one pre-crop box and ONE global crop + flip for all K frames, so
  patch p of every frame looks at the same image coordinates (what makes the dense next-frame
  target well-posed); independent colour per frame; L local crops from each of frames 1..K−1,
  each with its own geometry and colour.
* :class:`FrameViews` (Table 1 baselines): DINO's multi-crop of one frame (2 global + L local
  crops, optionally inside a pre-crop), or time-aug: the same views split between two frames Δ
  apart.

Sampling and applying are separate (``sample`` -> :class:`ViewParams` -> ``apply``): the
parameters can be inspected in tests, and each clip's randomness comes from one
``numpy.random.Generator`` that the dataset seeds from (seed, epoch, clip).

Implementation choices, and why:

* Geometry uses ``torchvision.transforms.v2.functional.resize`` on uint8 tensors (bicubic with
  antialias, like DINO's PIL pipeline) in channels-last layout (measured ~2x faster than NCHW).
  The K frames of a clip share one box, so they are resized in ONE batched call.
* Colour runs per view on uint8 HWC arrays with OpenCV, not with torchvision: torchvision's
  ``adjust_hue`` and ``gaussian_blur`` cost ~0.5-0.8 ms per 96² view (13 views per clip: ~15 ms,
  10x the clip's JPEG decoding), OpenCV's ~0.05 ms. The formulas are torchvision's and the tests
  check every op against ``torchvision.transforms.v2`` on uint8 (within a few grey levels: 8-bit
  rounding, and hue through 8-bit HSV, as PIL, which DINO uses, does).
* Colour jitter follows ``ColorJitter(0.4, 0.4, 0.2, 0.1)``: a random order of the four ops per
  view, applied with p=0.8; then grayscale p=0.2, Gaussian blur, solarize (threshold 128).
* Blur/solarize recipes are DINO's ``DataAugmentationDINO``: global view 1 blur p=1.0; global
  view 2 blur p=0.1 + solarize p=0.2; locals blur p=0.5. For K frames, frames alternate between
  the two global recipes (frame 0: recipe 1, frame 1: recipe 2, ...) so every student/teacher
  pair (x_j, x_{j+Δ}) of the dense loss is one "global 1" and one "global 2" view, as in DINO.
* Blur sigma is DINO's U(0.1, 2.0) px at its view sizes (224 global, 96 local), scaled with the
  view size, so a 96-px CPU global view is blurred as much *relative to its size* as a 224-px one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as tvf

from vidistill.config import Config, DataConfig

ASPECT = (3 / 4, 4 / 3)
SOLARIZE_THRESHOLD = 128  # PIL ImageOps.solarize default
DINO_GLOBAL_SIZE, DINO_LOCAL_SIZE = 224, 96  # the view sizes DINO's blur sigmas were chosen for
BLUR_SIGMA = (0.1, 2.0)


# ===================================================================================== geometry
@dataclass(frozen=True)
class Box:
    """A crop in frame pixel coordinates."""

    top: int
    left: int
    height: int
    width: int

    def inside(self, outer: Box) -> Box:
        """This box (relative to ``outer``) in ``outer``'s coordinate frame."""
        return Box(outer.top + self.top, outer.left + self.left, self.height, self.width)


def sample_box(
    rng: np.random.Generator, height: int, width: int, scale: Sequence[float], ratio: Sequence[float] = ASPECT
) -> Box:
    """torchvision's ``RandomResizedCrop.get_params``: area fraction in ``scale``, aspect in
    ``ratio`` (log-uniform), 10 tries, then the largest centred box with a valid aspect."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return Box(int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w)
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        h, w = height, round(height * max(ratio))
    else:
        w, h = width, height
    return Box((height - h) // 2, (width - w) // 2, h, w)


def pre_crop_scale(data: DataConfig, height: int, width: int) -> tuple[float, float]:
    """The pre-crop's area fraction of a ``height``×``width`` frame: ``data.pre_crop_scale``, raised
    so that the pre-crop is never smaller than a global view (``global_size``²).

    The pre-crop imitates object-centred framing on frames far larger than the training crops
    (the paper: 5-20% of a 1080p frame is a 430-860 px square, shrunk to 224; the floor never
    binds there). On a 192 px robot camera at 96 px crops, 5-20% is a 43-86 px square that the
    global view then upsamples up to 3.5x: blurred, zoomed-in views at another scale than any
    frame the encoder will see (issue 17). With the floor the pre-crop holds at least global_size²
    pixels, so a global view (40-100% of it) is enlarged by at most 1.6x per side.
    """
    floor = min(1.0, data.global_size**2 / float(height * width))
    lo, hi = data.pre_crop_scale
    return max(lo, floor), max(hi, floor)


def crop_resize(frames: Sequence[np.ndarray], box: Box, size: int, flip: bool) -> np.ndarray:
    """The same box of every frame, resized to size² (bicubic, antialias) and optionally flipped:
    uint8 (n, size, size, 3).

    Frames are HWC numpy arrays; ``permute`` gives a channels-last tensor without copying, the
    layout torch's uint8 resize kernels are fastest on, and the result comes back as HWC.
    """
    b = box
    crops = np.stack([f[b.top : b.top + b.height, b.left : b.left + b.width] for f in frames])
    x = torch.from_numpy(crops).permute(0, 3, 1, 2)
    x = tvf.resize(x, [size, size], interpolation=InterpolationMode.BICUBIC, antialias=True)
    out = x.permute(0, 2, 3, 1).numpy()
    return out[:, :, ::-1] if flip else out


# ===================================================================================== colour
@dataclass(frozen=True)
class ColorRecipe:
    """Probabilities of one kind of view (DINO's DataAugmentationDINO)."""

    blur_p: float
    solarize_p: float
    jitter_p: float = 0.8
    gray_p: float = 0.2


GLOBAL_1 = ColorRecipe(blur_p=1.0, solarize_p=0.0)
GLOBAL_2 = ColorRecipe(blur_p=0.1, solarize_p=0.2)
LOCAL = ColorRecipe(blur_p=0.5, solarize_p=0.0)
JITTER = {"brightness": 0.4, "contrast": 0.4, "saturation": 0.2, "hue": 0.1}


@dataclass
class Photometric:
    """Per-view colour parameters for V views (numpy arrays of length V)."""

    jitter: np.ndarray  # bool: colour jitter applied
    order: np.ndarray  # (V, 4) int: op order, 0 brightness, 1 contrast, 2 saturation, 3 hue
    brightness: np.ndarray
    contrast: np.ndarray
    saturation: np.ndarray
    hue: np.ndarray
    gray: np.ndarray  # bool
    blur_sigma: np.ndarray  # px; 0 = no blur
    solarize: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.jitter)

    @classmethod
    def sample(cls, rng: np.random.Generator, recipes: Sequence[ColorRecipe], sigma_scale: float,
               strength: float = 1.0) -> Photometric:
        """``strength`` scales the colour ops (jitter ranges, grayscale and solarize
        probabilities; blur is geometry-like and stays): 1 is DINO's recipe, 0 keeps colours.
        The draws are the same for every strength, so runs differ only in how far colours move."""
        v = len(recipes)
        p = {f: np.array([getattr(r, f) for r in recipes], dtype=np.float64) for f in
             ("blur_p", "solarize_p", "jitter_p", "gray_p")}
        for f in ("gray_p", "solarize_p") + (("jitter_p",) if strength == 0 else ()):
            p[f] *= strength  # at 0 no jitter op runs: an identity factor still rounds (hue's HSV trip)
        b, c, s, h = (JITTER[k] * strength for k in ("brightness", "contrast", "saturation", "hue"))
        blur = rng.random(v) < p["blur_p"]
        sigma = rng.uniform(*BLUR_SIGMA, size=v) * sigma_scale
        return cls(
            jitter=rng.random(v) < p["jitter_p"],
            order=np.argsort(rng.random((v, 4)), axis=1),  # a uniform random permutation per view
            brightness=rng.uniform(1 - b, 1 + b, size=v),
            contrast=rng.uniform(1 - c, 1 + c, size=v),
            saturation=rng.uniform(1 - s, 1 + s, size=v),
            hue=rng.uniform(-h, h, size=v),
            gray=rng.random(v) < p["gray_p"],
            blur_sigma=np.where(blur, sigma, 0.0),
            solarize=rng.random(v) < p["solarize_p"],
        )


# Each op takes and returns one RGB uint8 view (h, w, 3), like PIL's ImageEnhance/ImageOps that
# DINO uses: 8-bit intermediates, saturating arithmetic. Formulas are torchvision's; the tests
# check each against torchvision.transforms.v2 on uint8 (within a few levels: rounding, and
# 8-bit HSV for hue as in PIL).
def to_gray(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)


def adjust_brightness(img: np.ndarray, f: float) -> np.ndarray:
    return cv2.convertScaleAbs(img, alpha=f)  # f > 0: no negative values, "Abs" is a no-op


def adjust_contrast(img: np.ndarray, f: float) -> np.ndarray:
    mean = float(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).mean())
    return cv2.addWeighted(img, f, img, 0.0, (1.0 - f) * mean)  # blend with the mean grey


def adjust_saturation(img: np.ndarray, f: float) -> np.ndarray:
    return cv2.addWeighted(img, f, to_gray(img), 1.0 - f, 0.0)  # blend with the grey image


def adjust_hue(img: np.ndarray, f: float) -> np.ndarray:
    """Rotate hue by ``f`` turns (|f| <= 0.5) in 8-bit HSV with the full 0..255 hue range."""
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV_FULL)
    hsv[..., 0] += np.uint8(round(f * 256) % 256)  # uint8 arithmetic wraps: hue is circular
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Same kernel as torchvision's ``gaussian_blur`` with kernel size 2*ceil(3σ)+1, reflect border."""
    k = 2 * math.ceil(3 * sigma) + 1
    return cv2.GaussianBlur(img, (k, k), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)


_SOLARIZE_LUT = np.where(np.arange(256) >= SOLARIZE_THRESHOLD, 255 - np.arange(256), np.arange(256)).astype(np.uint8)


def solarize(img: np.ndarray) -> np.ndarray:
    return cv2.LUT(img, _SOLARIZE_LUT)


_JITTER_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def apply_photometric(views: np.ndarray, p: Photometric) -> np.ndarray:
    """Colour-augment a batch of RGB uint8 views (V, h, w, 3) in place, each with its own parameters.

    DINO's order: colour jitter (its four ops in the view's random order), grayscale, blur,
    solarize.
    """
    factors = (p.brightness, p.contrast, p.saturation, p.hue)
    for v in range(len(views)):
        img = views[v]
        if p.jitter[v]:
            for op in p.order[v]:
                img = _JITTER_OPS[op](img, float(factors[op][v]))
        if p.gray[v]:
            img = to_gray(img)
        if p.blur_sigma[v] > 0:
            img = gaussian_blur(img, float(p.blur_sigma[v]))
        if p.solarize[v]:
            img = solarize(img)
        if img is not views[v]:
            views[v] = img
    return views


# ====================================================================================== views
class Normalise:
    """uint8 views → float32 ``(x/255 − mean)/std``, on the views' device.

    The views cross the DataLoader's worker boundary as uint8 (a quarter of float32's bytes to
    pickle, pin and copy to the GPU) and become floats where the model runs: the trainer calls
    this after the move to the device. Same float32 ops in the same order as the worker did
    before (one multiply, one subtract, element by element), so the result is bit-identical.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], device: torch.device | str = "cpu"):
        mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.scale = (1.0 / (255.0 * std_t)).to(device)
        self.shift = (mean_t / std_t).to(device)

    def __call__(self, views: torch.Tensor) -> torch.Tensor:
        """(..., 3, H, W) uint8 → float32 of the same shape."""
        if views.dtype != torch.uint8:
            raise TypeError(f"expected uint8 views, got {views.dtype}")
        return views.to(torch.float32).mul_(self.scale).sub_(self.shift)

    def unit(self, views: torch.Tensor) -> torch.Tensor:
        """Float views in [0, 1] (rendered on the device: ``device_views``) → the same normalised input."""
        return (views * 255.0).mul_(self.scale).sub_(self.shift)


@dataclass
class ClipSample:
    """Views of one clip: ``globals`` (G, 3, H, W), ``locals`` (Gl, L, 3, h, w), uint8 RGB
    (:class:`Normalise` makes them the model's float input).

    Method: G = K frames, Gl = K−1 (locals of frames 1..K−1). DINO baselines: G = 2 global views,
    Gl = 1 (all (K−1)·L locals of the image, or of the two frames for time-aug).
    """

    globals: torch.Tensor
    locals: torch.Tensor


@dataclass
class ViewParams:
    """Everything random about one clip's views (boxes are in frame pixel coordinates)."""

    pre_crop: Box
    global_frames: list[int]
    global_boxes: list[Box]
    global_flips: list[bool]
    global_color: Photometric
    local_frames: list[int]
    local_boxes: list[Box]
    local_flips: list[bool]
    local_color: Photometric
    local_groups: int  # first dim of ``ClipSample.locals``


class _ViewBuilder:
    """Shared application of :class:`ViewParams`; subclasses decide what is sampled."""

    def __init__(self, data: DataConfig, color: bool = True):
        self.data = data
        self.color = color  # False: geometry only (tests, debugging, visualisation)
        self.strength = data.colour_strength
        self.global_sigma_scale = data.global_size / DINO_GLOBAL_SIZE
        self.local_sigma_scale = data.local_size / DINO_LOCAL_SIZE

    def sample(self, rng: np.random.Generator, height: int, width: int) -> ViewParams:
        raise NotImplementedError

    def _pre_crop(self, rng: np.random.Generator, height: int, width: int) -> Box:
        if not self.data.pre_crop:
            return Box(0, 0, height, width)
        return sample_box(rng, height, width, pre_crop_scale(self.data, height, width))

    def _boxes(self, rng: np.random.Generator, region: Box, scale: Sequence[float], n: int) -> list[Box]:
        return [sample_box(rng, region.height, region.width, scale).inside(region) for _ in range(n)]

    def __call__(self, frames: Sequence[np.ndarray], rng: np.random.Generator) -> ClipSample:
        h, w = frames[0].shape[:2]
        return self.apply(frames, self.sample(rng, h, w))

    def apply(self, frames: Sequence[np.ndarray], params: ViewParams) -> ClipSample:
        d = self.data
        g = self._render(frames, params.global_frames, params.global_boxes, params.global_flips,
                         params.global_color, d.global_size)
        loc = self._render(frames, params.local_frames, params.local_boxes, params.local_flips,
                           params.local_color, d.local_size)
        loc = loc.view(params.local_groups, -1, 3, d.local_size, d.local_size)
        return ClipSample(globals=g, locals=loc)

    def _render(self, frames, which: list[int], boxes: list[Box], flips: list[bool],
                color: Photometric, size: int) -> torch.Tensor:
        views = np.empty((len(which), size, size, 3), np.uint8)
        # Views sharing box and flip (the K globals of a clip) are resized in one call.
        groups: dict[tuple[Box, bool], list[int]] = {}
        for i, key in enumerate(zip(boxes, flips, strict=True)):
            groups.setdefault(key, []).append(i)
        for (box, flip), members in groups.items():
            views[members] = crop_resize([frames[which[i]] for i in members], box, size, flip)
        if self.color:
            apply_photometric(views, color)
        return torch.from_numpy(views).permute(0, 3, 1, 2).contiguous()  # uint8 NCHW; Normalise on the device


class ClipViews(_ViewBuilder):
    """The method's views of a K-frame clip (see the module docstring)."""

    def __init__(self, data: DataConfig, color: bool = True):
        super().__init__(data, color)

    def sample(self, rng: np.random.Generator, height: int, width: int) -> ViewParams:
        d = self.data
        k, n_local = d.num_frames, d.num_local
        region = self._pre_crop(rng, height, width)
        box = self._boxes(rng, region, d.global_scale, 1)[0]
        flip = bool(rng.random() < 0.5)
        global_color = Photometric.sample(
            rng, [GLOBAL_1 if j % 2 == 0 else GLOBAL_2 for j in range(k)], self.global_sigma_scale,
            self.strength,
        )
        local_frames = [j for j in range(1, k) for _ in range(n_local)]
        local_boxes = self._boxes(rng, region, d.local_scale, len(local_frames))
        local_flips = [bool(f) for f in rng.random(len(local_frames)) < 0.5]
        local_color = Photometric.sample(rng, [LOCAL] * len(local_frames), self.local_sigma_scale,
                                         self.strength)
        return ViewParams(
            pre_crop=region, global_frames=list(range(k)), global_boxes=[box] * k, global_flips=[flip] * k,
            global_color=global_color, local_frames=local_frames, local_boxes=local_boxes,
            local_flips=local_flips, local_color=local_color, local_groups=k - 1,
        )


class FrameViews(_ViewBuilder):
    """DINO's multi-crop of one frame, or of two frames Δ apart (time-aug), for the baselines.

    Plain: 2 global views (DINO recipes 1 and 2) + (K−1)·L locals of frame 0 (the method's
    count of student views, ``DataConfig.frame_dino_num_local``). Time-aug (two input
    frames): global view 1 and the first ceil(L/2) locals from frame 0, global view 2 and the
    other locals from frame 1. The pre-crop (when on) is one box shared by both frames: one
    "image" seen at two times. Output: globals (2, 3, H, W), locals (1, (K−1)·L, 3, h, w).
    """

    def __init__(self, data: DataConfig, time_aug: bool = False, color: bool = True):
        super().__init__(data, color)
        self.time_aug = time_aug

    def sample(self, rng: np.random.Generator, height: int, width: int) -> ViewParams:
        d = self.data
        region = self._pre_crop(rng, height, width)
        second = 1 if self.time_aug else 0
        global_boxes = self._boxes(rng, region, d.global_scale, 2)
        global_flips = [bool(f) for f in rng.random(2) < 0.5]
        global_color = Photometric.sample(rng, [GLOBAL_1, GLOBAL_2], self.global_sigma_scale, self.strength)
        n_local = d.frame_dino_num_local  # (K−1)·L: as many student views as the method
        first_half = math.ceil(n_local / 2)
        local_frames = [0 if (j < first_half or not self.time_aug) else second for j in range(n_local)]
        local_boxes = self._boxes(rng, region, d.local_scale, n_local)
        local_flips = [bool(f) for f in rng.random(n_local) < 0.5]
        local_color = Photometric.sample(rng, [LOCAL] * n_local, self.local_sigma_scale, self.strength)
        return ViewParams(
            pre_crop=region, global_frames=[0, second], global_boxes=global_boxes, global_flips=global_flips,
            global_color=global_color, local_frames=local_frames, local_boxes=local_boxes,
            local_flips=local_flips, local_color=local_color, local_groups=1,
        )


def clip_frames(cfg: Config) -> tuple[int, int]:
    """(frames per clip, stride) the objective needs: K and Δ for the method; for objective
    "dino" single frames, or pairs ``time_aug_delta`` apart for the time-aug baseline."""
    d = cfg.data
    if cfg.objective.is_frame_dino:
        return (2, d.time_aug_delta) if d.time_aug_delta > 0 else (1, 1)
    return d.num_frames, d.frame_stride


def build_views(cfg: Config, color: bool = True) -> ClipViews | FrameViews:
    """The view builder for the configured objective (Table 1: "dino" rows use FrameViews)."""
    if cfg.objective.is_frame_dino:
        return FrameViews(cfg.data, time_aug=cfg.data.time_aug_delta > 0, color=color)
    return ClipViews(cfg.data, color=color)
