"""``vidistill visualize``: what DINO users look at first, and the curves of a run.

* Features: the first three principal components of the patch features, shown as RGB beside
  the input frames (one PCA fitted over all shown frames, so colours mean the same thing in
  every frame). PNG: a grid of frames; MP4: a video of them side by side.
* Loss curves: ``--curves`` draws a run's ``log.jsonl``: one panel each for the loss terms, the
  teacher entropy (with log(out_dim), where uniform collapse sits) and the KL, per branch, each
  panel with its legend beside the axes.
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
    """Each frame (RGB) beside its PCA map, both ``tile`` px high at the encoder's aspect (the
    patch grid's: an export at a camera's HxW is not squashed square; nearest: patches stay visible)."""
    grid_h, grid_w = pcs.shape[1:3]
    size = (max(1, round(tile * grid_w / grid_h)), tile)
    out = []
    for frame, pc in zip(frames, pcs, strict=True):
        left = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        right = cv2.resize(pc, size, interpolation=cv2.INTER_NEAREST)
        out.append(np.concatenate([left, right], axis=1))
    return out


def sample_frames(video: str, count: int) -> list[np.ndarray]:
    from vidistill.data.sources import discover_sources

    source = discover_sources([video])[0]
    n = len(source)
    idx = np.linspace(0, n - 1, num=min(count, n)).round().astype(int)
    return [source.read(int(i)) for i in idx]


def feature_picture(encoder_path: str, video: str, output: Path, frames: int = 8, tile: int = 224,
                    image_size: int | str | None = None, device: str = "auto") -> Path:
    from vidistill.eval.features import to_input_aspect
    from vidistill.runtime import load_encoder

    enc = load_encoder(encoder_path, image_size=image_size, device=device)
    frames_rgb = sample_frames(video, frames)
    _, patches = enc.extract(frames_rgb, batch_size=16, total=len(frames_rgb), desc="visualize")
    images = [to_input_aspect(enc, im) for im in frames_rgb]  # shown: the region the encoder sees
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


BRANCH_COLOURS = {"total": (40, 40, 40), "dense": (200, 80, 0), "global": (0, 120, 220)}
# (title, [(log key, legend label)]): one panel per quantity, each branch a colour.
PANELS = (
    ("loss", [("loss", "total"), ("dense/loss", "dense"), ("global/loss", "global")]),
    ("teacher entropy (nats)", [("dense/teacher_entropy", "dense"), ("global/teacher_entropy", "global")]),
    ("KL(teacher || student)", [("dense/kl", "dense"), ("global/kl", "global")]),
)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _round_ticks(lo: float, hi: float, count: int = 5, min_step: float = 1.0) -> list[float]:
    """About ``count`` ticks at multiples of 1, 2 or 5 x 10^k (at least ``min_step``: whole
    steps) inside [lo, hi]."""
    raw = max((hi - lo) / max(count - 1, 1), min_step)
    mag = 10 ** np.floor(np.log10(raw)) if raw > 0 else 1.0
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    return [float(t) for t in np.arange(np.ceil(lo / step) * step, hi + 1e-9, step)]


def _plot_panel(records: list[dict], keys, title: str, reference: tuple[str, float] | None = None,
                size=(760, 240), legend_width: int = 150) -> np.ndarray:
    """One panel: curves in the axes, the legend in its own column right of them (never on a
    curve), an optional dashed reference line (e.g. log(out_dim) for the entropy)."""
    w, h = size
    img = np.full((h, w, 3), 255, np.uint8)
    left, top, bottom = 52, 26, 30
    right = w - legend_width
    cv2.putText(img, title, (left, 17), FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    series = {k: [(r["step"], float(r[k])) for r in records if isinstance(r.get(k), (int, float))
                  and np.isfinite(r[k])] for k, _ in keys}
    series = {k: pts for k, pts in series.items() if pts}
    if not series:
        cv2.putText(img, "(not logged in this run)", (left, h // 2), FONT, 0.45, (120, 120, 120), 1, cv2.LINE_AA)
        return img
    values = [v for pts in series.values() for _, v in pts] + ([reference[1]] if reference else [])
    steps = [st for pts in series.values() for st, _ in pts]
    x0, x1 = min(steps), max(max(steps), min(steps) + 1)
    y0, y1 = min(values), max(values)
    pad = 0.05 * (y1 - y0 or 1)
    y0, y1 = y0 - pad, y1 + pad

    def px(step: float, value: float) -> tuple[int, int]:
        return (int(left + (step - x0) / (x1 - x0) * (right - left)),
                int(h - bottom - (value - y0) / (y1 - y0) * (h - bottom - top)))

    cv2.rectangle(img, (left, top), (right, h - bottom), (180, 180, 180), 1)
    for ty in np.linspace(y0, y1, 5):
        yy = px(x0, ty)[1]
        cv2.line(img, (left - 3, yy), (left, yy), (120, 120, 120), 1)
        cv2.putText(img, f"{ty:.3g}", (4, yy + 4), FONT, 0.35, (90, 90, 90), 1, cv2.LINE_AA)
    for tx in _round_ticks(x0, x1):
        xx = px(tx, y0)[0]
        cv2.line(img, (xx, h - bottom), (xx, h - bottom + 3), (120, 120, 120), 1)
        label = f"{tx:g}"
        cv2.putText(img, label, (xx - 3 * len(label), h - bottom + 15), FONT, 0.35, (90, 90, 90), 1, cv2.LINE_AA)
    cv2.putText(img, "step", (right + 12, h - bottom + 15), FONT, 0.35, (90, 90, 90), 1, cv2.LINE_AA)
    legend = []
    if reference:
        a, b = px(x0, reference[1]), px(x1, reference[1])
        for xs in range(a[0], b[0], 8):  # dashed
            cv2.line(img, (xs, a[1]), (min(xs + 4, b[0]), a[1]), (150, 150, 150), 1)
        legend.append((reference[0], (150, 150, 150)))
    for key, label in keys:
        if key not in series:
            continue
        colour = BRANCH_COLOURS[label]  # drawn in RGB, converted once when written
        poly = np.array([px(st, v) for st, v in series[key]], np.int32)
        cv2.polylines(img, [poly], False, colour, 1, cv2.LINE_AA)
        legend.append((label, colour))
    for i, (label, colour) in enumerate(legend):
        y = top + 12 + 20 * i
        cv2.line(img, (right + 12, y - 4), (right + 36, y - 4), colour, 2)
        cv2.putText(img, label, (right + 42, y), FONT, 0.45, colour, 1, cv2.LINE_AA)
    return img


def _out_dim(run_dir: Path) -> int | None:
    import yaml

    path = run_dir / "config.yaml"
    if not path.is_file():
        return None
    return (yaml.safe_load(path.read_text()) or {}).get("model", {}).get("out_dim")


def loss_curves(run_dir: str, output: Path) -> Path:
    from vidistill.train.monitor import read_log

    records = read_log(run_dir)
    if not records:
        raise VidistillError(f"{run_dir}: no log.jsonl with records (is it a vidistill run folder?)")
    # A resumed run re-logs the steps after its checkpoint: keep the last record of each step.
    by_step = {r["step"]: r for r in records}
    records = [by_step[s] for s in sorted(by_step)]
    out_dim = _out_dim(Path(run_dir))
    panels = []
    for title, keys in PANELS:
        reference = ("log out_dim", float(np.log(out_dim))) if out_dim and "entropy" in title else None
        panels.append(_plot_panel(records, keys, title, reference))
    output.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(output), cv2.cvtColor(np.concatenate(panels, axis=0), cv2.COLOR_RGB2BGR)):
        raise VidistillError(f"{output}: cannot write the picture")
    return output


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("encoder", nargs="?", help="checkpoint, run folder or export folder (default: latest run)")
    p.add_argument("--video", help="video, frame folder or cache to take frames from")
    p.add_argument("--output", required=True, help="out.png / out.mp4 (features) or curves.png with --curves")
    p.add_argument("--frames", type=int, default=8, help="frames to show")
    p.add_argument("--tile", type=int, default=224,
                   help="height in pixels of each shown frame (width: the encoder's aspect)")
    p.add_argument("--image-size", default=None, metavar="S|HxW",
                   help="encoder input size (default: the trained or exported size; torch backend)")
    p.add_argument("--curves", action="store_true", help="draw the run's loss curves instead")
    p.add_argument("--device", default="auto")


def run(args: argparse.Namespace) -> int:
    from vidistill.runtime.checkpoints import find_checkpoint

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
