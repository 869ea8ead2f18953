"""Evaluation data layouts, read with clear errors that name the path.

Dense (ADE20K layout, and any dataset written that way, e.g. ``benchmarks/sim_robot``)::

    DIR/images/{training,validation}/NAME.jpg|png
    DIR/annotations/{training,validation}/NAME.png   uint8/uint16 labels, 0 = ignore, 1..N classes
    DIR/depth/{training,validation}/NAME.png         uint16 millimetres, 0 = invalid (depth probe)

Classification (image-folder)::

    DIR/train/<class>/*.jpg    DIR/val/<class>/*.jpg
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vidistill.data.sources.frame_folder import IMAGE_EXTENSIONS
from vidistill.errors import VidistillError


def _check_root(root: Path) -> Path:
    root = Path(root)
    if not root.exists():
        raise VidistillError(f"{root}: no such data folder")
    if not root.is_dir():
        raise VidistillError(f"{root}: is a file, expected a data folder")
    return root


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


@dataclass
class DenseSplit:
    """Paired files of one split: images[i] with targets[i] (annotation or depth map)."""

    name: str
    images: list[Path]
    targets: list[Path]

    def __len__(self) -> int:
        return len(self.images)


def dense_split(root: str | Path, split: str, target: str = "annotations") -> DenseSplit:
    """Pair ``images/<split>/X.*`` with ``<target>/<split>/X.png`` (target: annotations | depth)."""
    root = _check_root(Path(root))
    img_dir, tgt_dir = root / "images" / split, root / target / split
    expected = f"expected images/{split}/ and {target}/{split}/ (ADE20K layout, see `vidistill eval --help`)"
    for d in (img_dir, tgt_dir):
        if not d.is_dir():
            nested = sorted(s.name for s in root.iterdir() if (s / d.relative_to(root)).is_dir())
            hint = f" (found it under {root / nested[0]}: use that folder)" if nested else ""
            raise VidistillError(f"{root}: no {d.relative_to(root)}/ folder; {expected}{hint}")
    images = _images_in(img_dir)
    if not images:
        raise VidistillError(f"{img_dir}: no images (.jpg/.png) in this folder")
    targets = []
    for img in images:
        tgt = tgt_dir / f"{img.stem}.png"
        if not tgt.is_file():
            raise VidistillError(f"{img}: no matching {target} file {tgt}")
        targets.append(tgt)
    return DenseSplit(split, images, targets)


def read_label_map(path: Path) -> np.ndarray:
    """A label PNG as (H, W) int64; an RGB-coded PNG is an error (ADE20K uses one channel)."""
    lab = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if lab is None:
        raise VidistillError(f"{path}: cannot be read as a label map")
    if lab.ndim == 3:
        if lab.shape[2] >= 3 and (np.any(lab[..., 0] != lab[..., 1]) or np.any(lab[..., 0] != lab[..., 2])):
            raise VidistillError(f"{path}: colour-coded label map; expected one channel of class ids (0 = ignore)")
        lab = lab[..., 0]
    return lab.astype(np.int64)


def read_depth_map(path: Path) -> np.ndarray:
    """A 16-bit PNG in millimetres as (H, W) float32 metres (0 = invalid)."""
    d = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if d is None:
        raise VidistillError(f"{path}: cannot be read as a depth map")
    if d.ndim == 3:
        d = d[..., 0]
    if d.dtype != np.uint16:
        raise VidistillError(f"{path}: depth must be a 16-bit PNG in millimetres, got {d.dtype}")
    return d.astype(np.float32) / 1000.0


@dataclass
class FolderSplit:
    images: list[Path]
    labels: list[int]


def image_folder(root: str | Path) -> tuple[list[str], FolderSplit, FolderSplit]:
    """(class names, train split, val split) of ``train/<class>/*``, ``val/<class>/*``."""
    root = _check_root(Path(root))
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise VidistillError(
                f"{root}: no {split}/ folder; expected train/<class>/*.jpg and val/<class>/*.jpg"
            )
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    if len(classes) < 2:
        raise VidistillError(f"{root / 'train'}: needs at least two class folders, found {len(classes)}")
    index = {c: i for i, c in enumerate(classes)}
    splits = []
    for split in ("train", "val"):
        images, labels = [], []
        for d in sorted(p for p in (root / split).iterdir() if p.is_dir()):
            if d.name not in index:
                raise VidistillError(f"{d}: class {d.name!r} has no folder under {root / 'train'}")
            files = _images_in(d)
            images += files
            labels += [index[d.name]] * len(files)
        if not images:
            raise VidistillError(f"{root / split}: no images in its class folders")
        splits.append(FolderSplit(images, labels))
    return classes, splits[0], splits[1]
