"""``vidistill visualize``: what DINO users look at first, and the curves of a run.

* Features: the first three principal components of the patch features, shown as RGB beside
  the input frames (one PCA fitted over all shown frames, so colours mean the same thing in
  every frame). PNG: a grid of frames; MP4: a video of them side by side.
* Loss curves: ``--curves`` draws a run's ``log.jsonl`` (loss terms, teacher entropy, KL).
Drawn with OpenCV (no GUI libraries needed on a robot or a server).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import cv2
import numpy as np

from vidistill.errors import VidistillError

log = logging.getLogger(__name__)


def pca_rgb(patch_maps: np.ndarray) -> np.ndarray:
    """(N, D, h, w) features -> (N, h, w, 3) uint8: projection on the top-3 principal axes,
    each axis scaled by robust (1st–99th percentile) bounds shared by all frames."""
    n, d, h, w = patch_maps.shape
    x = patch_maps.transpose(0, 2, 3, 1).reshape(-1, d).astype(np.float64)
    x -= x.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    proj = x @ vt[:3].T
    lo, hi = np.percentile(proj, 1, axis=0), np.percentile(proj, 99, axis=0)
    rgb = np.clip((proj - lo) / np.maximum(hi - lo, 1e-8), 0, 1)
    return (rgb.reshape(n, h, w, 3) * 255).astype(np.uint8)


def side_by_side(frames: list[np.ndarray], pcs: np.ndarray, tile: int) -> list[np.ndarray]:
    """Each frame (RGB) beside its PCA map, both tile x tile (nearest: patches stay visible)."""
    out = []
    for frame, pc in zip(frames, pcs, strict=True):
        left = cv2.resize(frame, (tile, tile), interpolation=cv2.INTER_AREA)
        right = cv2.resize(pc, (tile, tile), interpolation=cv2.INTER_NEAREST)
        out.append(np.concatenate([left, right], axis=1))
    return out


def sample_frames(video: str, count: int) -> list[np.ndarray]:
    from vidistill.data.sources import discover_sources

    source = discover_sources([video])[0]
    n = len(source)
    idx = np.linspace(0, n - 1, num=min(count, n)).round().astype(int)
    return [source.read(int(i)) for i in idx]


def feature_picture(encoder_path: str, video: str, output: Path, frames: int = 8, tile: int = 224,
                    image_size: int | None = None, device: str = "auto") -> Path:
    from vidistill.eval.features import load_encoder

    enc = load_encoder(encoder_path, image_size=image_size, device=device)
    images = sample_frames(video, frames)
    _, patches = enc.extract(images, batch_size=16, total=len(images), desc="visualize")
    pcs = pca_rgb(enc.patch_maps(patches.float()).numpy())
    panels = side_by_side(images, pcs, tile)
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix.lower() == ".mp4":
        h, w = panels[0].shape[:2]
        writer = cv2.VideoWriter(str(output), cv2.VideoWriter_fourcc(*"mp4v"), 4.0, (w, h))
        for p in panels:
            writer.write(cv2.cvtColor(p, cv2.COLOR_RGB2BGR))
        writer.release()
    else:
        cols = 2 if len(panels) > 1 else 1
        rows = [np.concatenate(panels[i : i + cols], axis=1) for i in range(0, len(panels), cols)]
        if rows[-1].shape != rows[0].shape:
            pad = np.zeros_like(rows[0])
            pad[:, : rows[-1].shape[1]] = rows[-1]
            rows[-1] = pad
        if not cv2.imwrite(str(output), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR)):
            raise VidistillError(f"{output}: cannot write the picture (use .png, .jpg or .mp4)")
    return output


CURVES = (("loss", (40, 40, 40)), ("dense/loss", (200, 80, 0)), ("global/loss", (0, 120, 220)))
DIAGNOSTICS = (("teacher_entropy", (0, 150, 0)), ("kl", (160, 0, 160)))


def _plot_panel(records: list[dict], keys, title: str, size=(640, 300)) -> np.ndarray:
    w, h = size
    img = np.full((h, w, 3), 255, np.uint8)
    margin = 40
    series = {k: [(r["step"], r[k]) for r in records if isinstance(r.get(k), (int, float))] for k, _ in keys}
    values = [v for pts in series.values() for _, v in pts if np.isfinite(v)]
    if not values:
        return img
    steps = [s for pts in series.values() for s, _ in pts]
    x0, x1 = min(steps), max(max(steps), min(steps) + 1)
    y0, y1 = min(values), max(values)
    y0, y1 = (y0 - 0.05 * (y1 - y0 or 1), y1 + 0.05 * (y1 - y0 or 1))
    cv2.rectangle(img, (margin, 10), (w - 10, h - margin), (180, 180, 180), 1)
    for ty in np.linspace(y0, y1, 5):
        yy = int(h - margin - (ty - y0) / (y1 - y0) * (h - margin - 10))
        cv2.putText(img, f"{ty:.2f}", (2, yy + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (90, 90, 90), 1)
    cv2.putText(img, f"step {x0}..{x1}   {title}", (margin, h - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    for i, (k, colour) in enumerate(keys):
        pts = [(s, v) for s, v in series[k] if np.isfinite(v)]
        if not pts:
            continue
        poly = np.array([[margin + (s - x0) / (x1 - x0) * (w - margin - 10),
                          h - margin - (v - y0) / (y1 - y0) * (h - margin - 10)] for s, v in pts], np.int32)
        cv2.polylines(img, [poly], False, colour[::-1], 1, cv2.LINE_AA)
        cv2.putText(img, k, (w - 170, 25 + 16 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour[::-1], 1)
    return img


def loss_curves(run_dir: str, output: Path) -> Path:
    from vidistill.train.monitor import read_log

    records = read_log(run_dir)
    if not records:
        raise VidistillError(f"{run_dir}: no log.jsonl with records (is it a vidistill run folder?)")
    # A resumed run re-logs the steps after its checkpoint: keep the last record of each step.
    by_step = {r["step"]: r for r in records}
    records = [by_step[s] for s in sorted(by_step)]
    picture = np.concatenate([_plot_panel(records, CURVES, "loss terms"),
                              _plot_panel(records, DIAGNOSTICS, "teacher entropy / KL (collapse watch)")], axis=0)
    output.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(output), picture):
        raise VidistillError(f"{output}: cannot write the picture")
    return output


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("encoder", nargs="?", help="checkpoint, run folder or export folder (default: latest run)")
    p.add_argument("--video", help="video, frame folder or cache to take frames from")
    p.add_argument("--output", required=True, help="out.png / out.mp4 (features) or curves.png with --curves")
    p.add_argument("--frames", type=int, default=8, help="frames to show")
    p.add_argument("--tile", type=int, default=224, help="pixels per shown frame")
    p.add_argument("--image-size", type=int, help="encoder input size (default: the trained size)")
    p.add_argument("--curves", action="store_true", help="draw the run's loss curves instead")
    p.add_argument("--device", default="auto")


def run(args: argparse.Namespace) -> int:
    from vidistill.checkpoint import find_checkpoint

    target = args.encoder
    if target is None:
        target = str(find_checkpoint(None).parent)
    if args.curves:
        run_dir = Path(target) if Path(target).is_dir() else Path(target).parent
        out = loss_curves(str(run_dir), Path(args.output))
    else:
        if not args.video:
            raise VidistillError("--video is needed to draw feature pictures (or use --curves)")
        out = feature_picture(target, args.video, Path(args.output), args.frames, args.tile, args.image_size, args.device)
    print(f"wrote {out}")  # noqa: T201 - CLI output
    return 0
