"""Views rendered on the training device (``data.views_on: device``) against the worker's views.

The same parameter draws, rendered both ways: on a smooth textured scene (what a camera sees,
not pixel noise) the device views are within a grey level on average of the worker's, colour
included; each colour op matches the worker's OpenCV op; a clip renders the same alone and in
a batch padded to a larger clip; and ``vidistill train --views-on device`` trains through real
DataLoader workers.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.bench_data import scene
from tests.test_train import TINY, read_log, run_cli
from vidistill.config import build_config
from vidistill.data import device_views as dev
from vidistill.data import views as worker
from vidistill.data.dataset import collate_clips
from vidistill.data.device_views import DeviceViews, collate_raw_clips, raw_clip
from vidistill.data.views import Normalise, build_views


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return list(scene(61, (256, 192)))[::30]  # K=3 frames Δ=30 apart


def grey_levels(a: torch.Tensor, b: torch.Tensor, cfg) -> torch.Tensor:
    """|a − b| of two normalised view tensors, in 8-bit grey levels."""
    std = torch.tensor(cfg.data.std).view(3, 1, 1)
    return ((a - b) * std * 255).abs()


@pytest.mark.parametrize("objective", ["dense+global", "dino"])
@pytest.mark.parametrize("strength", [0.0, 1.0])
def test_device_views_match_the_workers_for_the_same_draws(frames, objective, strength):
    cfg = build_config("cpu-tiny", overrides={"data.colour_strength": strength, "objective": objective})
    views = build_views(cfg)
    clip = frames if objective == "dense+global" else frames[:1]
    samples = [(views(clip, np.random.default_rng(i)), i) for i in range(6)]
    raws = [(raw_clip(views, clip, np.random.default_rng(i)), i) for i in range(6)]
    on_worker = collate_clips(samples)
    g, loc = DeviceViews(cfg.data)(collate_raw_clips(raws))
    norm = Normalise(cfg.data.mean, cfg.data.std)
    assert g.shape == on_worker.globals.shape and loc.shape == on_worker.locals.shape
    for device_views, worker_views in ((g, norm(on_worker.globals)), (loc, norm(on_worker.locals))):
        diff = grey_levels(device_views, worker_views, cfg)
        assert diff.mean() < 1.0  # measured 0.36-0.61
        assert diff.flatten().quantile(0.99) < 4.0  # measured 1.2-3.1
        per_view = diff.flatten(0, -4).mean(dim=(1, 2, 3))
        assert per_view.max() < 2.5  # no view drawn differently (a wrong flip or box is ~30 levels)


@pytest.mark.parametrize("op", ["brightness", "contrast", "saturation", "hue", "gray", "blur", "solarize"])
def test_each_colour_op_matches_the_workers_opencv_op(frames, op):
    rng = np.random.default_rng(0)
    images = np.stack([worker.crop_resize([f], worker.Box(20 + 10 * i, 30, 120, 120), 48, False)[0]
                       for i, f in enumerate(frames)])
    factors = {"brightness": [0.6, 1.0, 1.4], "contrast": [0.6, 1.0, 1.4], "saturation": [0.8, 1.0, 1.2],
               "hue": [-0.1, 0.03, 0.1]}
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    if op in factors:
        f = factors[op]
        expected = np.stack([getattr(worker, f"adjust_{op}")(img, fi) for img, fi in zip(images, f, strict=True)])
        got = getattr(dev, f"adjust_{op}")(x.clone(), torch.tensor(f))
    elif op == "blur":
        sigma = rng.uniform(0.1, 2.0, size=len(images))
        expected = np.stack([worker.gaussian_blur(img, s) for img, s in zip(images, sigma, strict=True)])
        got = dev.gaussian_blur(x.clone(), sigma)
    else:
        expected = np.stack([getattr(worker, {"gray": "to_gray", "solarize": "solarize"}[op])(img) for img in images])
        got = getattr(dev, {"gray": "to_gray", "solarize": "solarize"}[op])(x.clone())
    diff = (got.permute(0, 2, 3, 1) * 255 - torch.from_numpy(expected).float()).abs()
    assert diff.mean() < 0.75, diff.mean()  # 8-bit rounding in the worker, none here
    assert diff.max() <= (6 if op == "hue" else 2), diff.max()  # hue: the worker goes through 8-bit HSV
    moved = (got.permute(0, 2, 3, 1) * 255 - torch.from_numpy(images).float()).abs().mean()
    assert moved > 1, moved  # the op did something the comparison could catch


def test_a_clip_renders_the_same_alone_and_padded_into_a_batch_of_larger_frames(frames):
    cfg = build_config("cpu-tiny", overrides={"data.colour_strength": 1.0})
    views = build_views(cfg)
    small = [f[:100, :140].copy() for f in frames]  # another camera's resolution in the same batch
    alone = collate_raw_clips([(raw_clip(views, small, np.random.default_rng(3)), 0)])
    mixed = collate_raw_clips([(raw_clip(views, frames, np.random.default_rng(1)), 1),
                               (raw_clip(views, small, np.random.default_rng(3)), 0)])
    assert mixed.frames.shape[2] > alone.frames.shape[2] or mixed.frames.shape[3] > alone.frames.shape[3]
    render = DeviceViews(cfg.data)
    g_alone, l_alone = render(alone)
    g_mixed, l_mixed = render(mixed)
    torch.testing.assert_close(g_mixed[1], g_alone[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(l_mixed[1], l_alone[0], rtol=0, atol=1e-5)


def test_cli_trains_with_views_on_the_device_through_real_workers(tmp_path, make_video):
    video = make_video(tmp_path / "v.mp4", 48)
    out = tmp_path / "run"
    args = [a if a != "0" or TINY[i - 1] != "--num-workers" else "1" for i, a in enumerate(TINY)]
    r = run_cli("train", "--video", str(video), "--output", str(out), "--max-steps", "3", "--views-on", "device",
                *args)
    assert r.returncode == 0, r.stderr
    assert "1 DataLoader workers" in r.stderr
    records = read_log(out)
    assert [x["step"] for x in records] == [1, 2, 3]
    assert all(np.isfinite(x["loss"]) for x in records)
