"""Augmentation: shared clip geometry, independent colour, frame routing, and colour ops vs torchvision."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as tvf

from vidistill.config import build_config
from vidistill.data import views as V
from vidistill.data.views import Box, ClipViews, FrameViews, Normalise, build_views


def data_cfg(**over):
    """cpu-tiny's data settings with DINO's colour recipe (the preset itself keeps colours since
    issue 17; these tests are about the recipe)."""
    over = {"data.colour_strength": 1.0, **{f"data.{k}": v for k, v in over.items()}}
    return build_config("cpu-tiny", overrides=over).data


def pattern(h=192, w=256, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) % 256], axis=-1).astype(np.uint8)
    img[::16] = rng.integers(0, 255, size=(len(img[::16]), w, 3), dtype=np.uint8)  # texture
    return img


def flat(value: int, h=192, w=256) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)


# ------------------------------------------------------------------------------ colour ops
def test_colour_ops_match_torchvision_on_uint8():
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8), (0, 0), 3)
    img = np.clip((img.astype(int) - 100) * 3 + 128, 0, 255).astype(np.uint8)  # full range
    img[:4] = (255, 0, 0)  # saturated red
    img[4:8] = 128  # grey: hue undefined
    t = torch.from_numpy(img).permute(2, 0, 1)

    def close(mine: np.ndarray, ref: torch.Tensor, max_err: int, mean_err: float) -> None:
        err = np.abs(mine.astype(int) - ref.permute(1, 2, 0).numpy().astype(int))
        assert err.max() <= max_err and err.mean() <= mean_err, (err.max(), err.mean())

    for f in (0.6, 0.9, 1.4):
        close(V.adjust_brightness(img, f), tvf.adjust_brightness(t, f), 1, 0.75)
        close(V.adjust_contrast(img, f), tvf.adjust_contrast(t, f), 1, 0.75)
    for f in (0.8, 1.2):
        close(V.adjust_saturation(img, f), tvf.adjust_saturation(t, f), 2, 0.75)
    for f in (-0.1, -0.03, 0.0, 0.05, 0.1):  # 8-bit HSV, like PIL: a few levels
        close(V.adjust_hue(img, f), tvf.adjust_hue(t, f), 6, 0.5)
    close(V.to_gray(img), tvf.rgb_to_grayscale(t, num_output_channels=3), 1, 0.75)
    for sigma in (0.1, 0.7, 2.0):
        k = 2 * math.ceil(3 * sigma) + 1
        close(V.gaussian_blur(img, sigma), tvf.gaussian_blur(t, [k, k], [sigma, sigma]), 1, 0.1)
    close(V.solarize(img), tvf.solarize(t, 128), 0, 0.0)


def test_photometric_applies_per_view_parameters():
    rng = np.random.default_rng(1)
    p = V.Photometric.sample(rng, [V.LOCAL] * 64, 1.0)
    assert len(p) == 64 and p.order.shape == (64, 4)
    assert all(sorted(row) == [0, 1, 2, 3] for row in p.order.tolist())
    assert 0.6 <= p.brightness.min() and p.brightness.max() <= 1.4 and np.abs(p.hue).max() <= 0.1
    views = np.stack([pattern(16, 16, seed=i) for i in range(64)])
    out = V.apply_photometric(views.copy(), p)
    untouched = ~(p.jitter | p.gray | (p.blur_sigma > 0) | p.solarize)
    assert untouched.any() and np.array_equal(out[untouched], views[untouched])
    assert not np.array_equal(out[~untouched], views[~untouched])
    grey = p.gray & ~p.solarize
    assert (out[grey].max(axis=-1) == out[grey].min(axis=-1)).all()  # R == G == B


def test_colour_strength_scales_the_colour_ops_and_keeps_blur():
    recipes = [V.GLOBAL_2] * 200
    full = V.Photometric.sample(np.random.default_rng(3), recipes, 1.0)
    half = V.Photometric.sample(np.random.default_rng(3), recipes, 1.0, strength=0.5)
    none = V.Photometric.sample(np.random.default_rng(3), recipes, 1.0, strength=0.0)
    # The same draws, scaled: a run at another strength differs only in how far colours move.
    assert np.allclose(half.brightness - 1, (full.brightness - 1) / 2) and np.allclose(half.hue, full.hue / 2)
    assert (half.gray <= full.gray).all() and half.gray.sum() < full.gray.sum()
    assert not none.gray.any() and not none.solarize.any()
    assert np.array_equal(none.blur_sigma, full.blur_sigma)
    views = np.stack([pattern(16, 16, seed=i) for i in range(200)])
    no_blur = none.blur_sigma == 0
    out = V.apply_photometric(views.copy(), none)
    assert no_blur.any() and np.array_equal(out[no_blur], views[no_blur])  # colours kept exactly
    # From the config, through the view builder.
    sample = ClipViews(data_cfg(colour_strength=0.0)).sample(np.random.default_rng(0), 192, 256)
    assert not sample.local_color.gray.any() and (sample.local_color.brightness == 1).all()


def test_dino_recipes_alternate_over_clip_frames():
    views = ClipViews(data_cfg(num_frames=4))
    rng = np.random.default_rng(0)
    blurred = np.zeros(4)
    solarized = np.zeros(4)
    for _ in range(200):
        c = views.sample(rng, 192, 256).global_color
        blurred += c.blur_sigma > 0
        solarized += c.solarize
    assert blurred[0] == blurred[2] == 200  # DINO global view 1: blur p=1.0
    assert blurred[1] < 60 and blurred[3] < 60  # global view 2: blur p=0.1
    assert solarized[0] == solarized[2] == 0 and solarized[1] > 10 and solarized[3] > 10  # solarize p=0.2


# -------------------------------------------------------------------------------- geometry
def test_clip_views_shapes_and_shared_geometry():
    data = data_cfg()
    views = ClipViews(data)
    frames = [pattern(seed=k) for k in range(3)]
    params = views.sample(np.random.default_rng(0), 192, 256)
    assert len(set(params.global_boxes)) == 1 and len(set(params.global_flips)) == 1
    region = params.pre_crop
    area = region.height * region.width / (192 * 256)
    assert 0.03 <= area <= 0.22  # pre_crop_scale (0.05, 0.20), up to integer rounding
    for box in params.global_boxes + params.local_boxes:
        assert region.top <= box.top and box.top + box.height <= region.top + region.height
        assert region.left <= box.left and box.left + box.width <= region.left + region.width
    assert params.local_frames == [1] * 5 + [2] * 5
    assert len(set(params.local_boxes)) == 10  # each local its own geometry
    assert len(set(params.global_color.hue.tolist())) == 3  # independent colour per frame
    sample = views.apply(frames, params)
    assert sample.globals.shape == (3, 3, 96, 96) and sample.globals.dtype == torch.uint8
    assert sample.locals.shape == (2, 5, 3, 48, 48) and sample.locals.dtype == torch.uint8


def test_global_crop_is_identical_across_frames_while_colour_differs():
    data = data_cfg()
    frame = pattern()
    same = [frame] * 3
    geometry_only = ClipViews(data, color=False)(same, np.random.default_rng(3))
    assert torch.equal(geometry_only.globals[0], geometry_only.globals[1])
    assert torch.equal(geometry_only.globals[1], geometry_only.globals[2])
    coloured = ClipViews(data)(same, np.random.default_rng(3))
    assert not torch.equal(coloured.globals[0], coloured.globals[1])
    assert not torch.equal(coloured.globals[1], coloured.globals[2])


def test_views_render_the_sampled_box_of_the_right_frame():
    data = data_cfg(pre_crop=False)
    views = ClipViews(data, color=False)
    frame = pattern()
    params = views.sample(np.random.default_rng(5), 192, 256)
    assert params.pre_crop == Box(0, 0, 192, 256)
    out = views.apply([frame, frame, frame], params)
    b = params.global_boxes[0]
    ref = tvf.resized_crop(
        torch.from_numpy(frame).permute(2, 0, 1), b.top, b.left, b.height, b.width, [96, 96],
        interpolation=InterpolationMode.BICUBIC, antialias=True,
    )
    if params.global_flips[0]:
        ref = ref.flip(-1)
    assert torch.equal(out.globals[0], ref)
    # Frame routing: global k shows frame k; locals of group j come from frame j+1.
    routed = views.apply([flat(20), flat(120), flat(220)], params)
    assert [round(g.float().mean().item()) for g in routed.globals] == [20, 120, 220]
    assert [round(g.float().mean().item()) for g in routed.locals[:, 0]] == [120, 220]


def test_normalisation_uses_config_mean_and_std():
    data = data_cfg(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    out = ClipViews(data, color=False)([flat(255)] * 3, np.random.default_rng(0))
    x = Normalise(data.mean, data.std)(out.globals)
    assert x.dtype == torch.float32 and x.shape == out.globals.shape
    torch.testing.assert_close(x, torch.full_like(x, 2.0))
    # ImageNet's statistics on every grey level, any leading dims: (x/255 − mean)/std per channel.
    data = data_cfg()
    levels = torch.arange(256, dtype=torch.uint8).view(1, 1, 1, 16, 16).expand(2, 1, 3, 16, 16)
    mean, std = torch.tensor(data.mean).view(3, 1, 1), torch.tensor(data.std).view(3, 1, 1)
    ref = (levels.double() / 255 - mean.double()) / std.double()
    torch.testing.assert_close(Normalise(data.mean, data.std)(levels).double(), ref, atol=1e-6, rtol=0)
    with pytest.raises(TypeError, match="uint8"):
        Normalise(data.mean, data.std)(x)  # already floats: normalising twice would be silent


def test_frame_views_plain_and_time_aug():
    data = data_cfg(pre_crop=False)
    plain = FrameViews(data, color=False)
    params = plain.sample(np.random.default_rng(0), 192, 256)
    assert params.global_frames == [0, 0] and params.local_frames == [0] * 10  # (K-1)*L, as the method
    assert params.global_boxes[0] != params.global_boxes[1]  # DINO: two independent global crops
    out = plain([pattern()], np.random.default_rng(0))
    assert out.globals.shape == (2, 3, 96, 96) and out.locals.shape == (1, 10, 3, 48, 48)

    time_aug = FrameViews(data, time_aug=True, color=False)
    out = time_aug([flat(40), flat(200)], np.random.default_rng(0))
    assert [round(g.float().mean().item()) for g in out.globals] == [40, 200]
    assert [round(v.float().mean().item()) for v in out.locals[0]] == [40] * 5 + [200] * 5


@pytest.mark.parametrize(("objective", "delta", "cls", "inputs"), [
    ("dense+global", 0, ClipViews, 3), ("dense", 0, ClipViews, 3), ("global", 0, ClipViews, 3),
    ("dino", 0, FrameViews, 1), ("dino", 5, FrameViews, 2),
])
def test_build_views_follows_the_objective(objective, delta, cls, inputs):
    cfg = build_config("cpu-tiny", overrides={"objective": objective, "data.time_aug_delta": delta})
    views = build_views(cfg)
    assert type(views) is cls and V.clip_frames(cfg)[0] == inputs


def test_sampling_is_deterministic_given_the_generator():
    views = ClipViews(data_cfg())
    frames = [pattern(seed=k) for k in range(3)]
    a = views(frames, np.random.default_rng(11))
    b = views(frames, np.random.default_rng(11))
    assert torch.equal(a.globals, b.globals) and torch.equal(a.locals, b.locals)


def test_pre_crop_never_shrinks_below_a_global_view_on_small_frames():
    """A 192 px robot camera at 96 px crops: 5-20% of the frame would be a 43-86 px square,
    upsampled into every view; the pre-crop is raised to at least 96x96 px instead. On a 1080p
    frame (the paper's) the configured 5-20% stands."""
    from vidistill.data.views import pre_crop_scale

    data = data_cfg(global_size=96)
    assert pre_crop_scale(data, 192, 192) == (0.25, 0.25)
    assert pre_crop_scale(data, 1080, 1920) == (0.05, 0.20)
    assert pre_crop_scale(data_cfg(global_size=224), 1080, 1920) == (0.05, 0.20)
    assert pre_crop_scale(data_cfg(global_size=224), 200, 200) == (1.0, 1.0)  # smaller than a view: whole frame
    views = ClipViews(data)
    rng = np.random.default_rng(0)
    for _ in range(50):
        region = views.sample(rng, 192, 192).pre_crop
        assert region.height * region.width >= 0.95 * 96 * 96  # integer rounding of the box sides
