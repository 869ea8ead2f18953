"""``vidistill visualize --curves`` on a log written by the trainer's own RunLogger."""

from __future__ import annotations

import math

import cv2
import numpy as np

from vidistill.cli import main
from vidistill.train.monitor import RunLogger
from vidistill.visualize import BRANCH_COLOURS


def _rows_with(img: np.ndarray, colour, x0: int, x1: int) -> set[int]:
    region = img[:, x0:x1].astype(int)
    close = (np.abs(region - np.array(colour)).sum(axis=-1) < 40).any(axis=1)
    return set(np.flatnonzero(close).tolist())


def test_curves_put_one_readable_legend_per_panel_outside_the_axes(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model:\n  out_dim: 4096\n")
    logger = RunLogger(run)
    for step in range(1, 201):  # curves that cross, as real loss terms do
        g = 2.0 + 6.0 * step / 200
        logger.write({"step": step, "loss": 5.0, "dense/loss": 5.0 + math.sin(step / 9), "global/loss": g,
                      "dense/teacher_entropy": 3.7, "global/teacher_entropy": g, "dense/kl": 1.2, "global/kl": 3 - g / 4})
    logger.close()
    out = tmp_path / "curves.png"
    assert main(["visualize", str(run), "--curves", "--output", str(out)]) == 0
    img = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    h, w = img.shape[:2]
    assert h == 3 * 240 and w == 760  # loss, entropy, KL: one panel each
    legend_x, axes_x = w - 150, (52, w - 150)
    for panel in range(3):
        band = img[panel * 240 : (panel + 1) * 240]
        dense = _rows_with(band, BRANCH_COLOURS["dense"], legend_x, w)
        glob = _rows_with(band, BRANCH_COLOURS["global"], legend_x, w)
        assert dense and glob, f"panel {panel}: both branches are in its legend"
        assert not dense & glob, f"panel {panel}: legend entries overlap"
        # ... and the curves themselves are drawn in the axes, left of the legend column
        assert _rows_with(band, BRANCH_COLOURS["global"], *axes_x)


def test_feature_picture_keeps_a_non_square_exports_aspect(tmp_path, video_file):
    """An export at a camera's aspect (64x96: a 4x6 grid) is drawn 64 px high and 96 wide, frame and
    feature map alike, not squashed into squares."""
    from runtime_fixtures import export_run

    from vidistill.config import build_config
    from vidistill.train.checkpoint import write_random_init_checkpoint

    ckpt = write_random_init_checkpoint(build_config("cpu-tiny"), tmp_path / "run")
    export = export_run(ckpt, tmp_path / "export", image_size=(64, 96), onnx=False)
    out = tmp_path / "features.png"
    assert main(["visualize", str(export), "--video", str(video_file), "--output", str(out),
                 "--frames", "2", "--tile", "64"]) == 0
    picture = cv2.imread(str(out))
    assert picture.shape[:2] == (64, 2 * (96 + 96))
