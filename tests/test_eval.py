"""vidistill.eval: probe machinery on synthetic features, metrics, and the CLI end to end."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import torch

from vidistill.errors import VidistillError
from vidistill.eval import probe
from vidistill.eval.knn import knn_accuracy
from vidistill.eval.metrics import confusion_matrix, segmentation_scores


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors are tiny: one intra-op thread is as fast, and far faster when the machine's
    cores are busy (OpenMP threads spin-waiting under contention made this module 10x slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---- metrics --------------------------------------------------------------------------------


def test_confusion_and_miou_match_hand_computation():
    gt = torch.tensor([0, 0, 0, 1, 1, 2, -1, -1])
    pred = torch.tensor([0, 0, 1, 1, 2, 2, 0, 3])  # the two IGNORE pixels must not count
    conf = confusion_matrix(pred, gt, num_classes=4)
    expected = torch.zeros(4, 4, dtype=torch.int64)
    expected[0, 0], expected[0, 1], expected[1, 1], expected[1, 2], expected[2, 2] = 2, 1, 1, 1, 1
    assert torch.equal(conf, expected)
    s = segmentation_scores(conf)
    # IoU0 = 2/(3+2-2) = 2/3; IoU1 = 1/(2+2-1) = 1/3; IoU2 = 1/(1+2-1) = 1/2; class 3 absent.
    assert s["per_class_iou"][:3] == pytest.approx([2 / 3, 1 / 3, 1 / 2])
    assert s["per_class_iou"][3] is None
    assert s["classes_scored"] == 3
    assert s["miou"] == pytest.approx((2 / 3 + 1 / 3 + 1 / 2) / 3)
    assert s["pixel_accuracy"] == pytest.approx(4 / 6)


def test_miou_counts_a_class_that_is_only_predicted():
    conf = confusion_matrix(torch.tensor([1, 1]), torch.tensor([0, 0]), num_classes=3)
    s = segmentation_scores(conf)
    assert s["classes_scored"] == 2 and s["miou"] == 0.0


# ---- probe heads on synthetic features ------------------------------------------------------


def _linear_labels(n, d, c, grid, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(c, d, generator=g)
    feats = torch.randn(n, d, grid, grid, generator=g)
    labels = torch.einsum("cd,ndhw->nchw", w, feats).argmax(1)
    return feats, labels, w


def test_segmentation_head_learns_linearly_decodable_labels():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(4, 16, generator=g)
    x = torch.randn(80, 16, 8, 8, generator=g)
    y = torch.einsum("cd,ndhw->nchw", w, x).argmax(1)
    y[:, 0, 0] = probe.IGNORE  # ignored pixels are fine
    head = probe.train_segmentation_head(x[:60], y[:60], 4, iters=300, batch_size=16, lr=1e-2)
    conf = probe.segmentation_confusion(head, x[60:], list(y[60:]), 4)
    s = segmentation_scores(conf)
    assert s["miou"] > 0.9, s
    assert s["pixel_accuracy"] > 0.95, s


def test_segmentation_head_upsamples_to_a_finer_label_map():
    # labels constant per 4x4 block of a 32x32 map, decodable from an 8x8 feature grid
    g = torch.Generator().manual_seed(2)
    w = torch.randn(3, 8, generator=g)
    x = torch.randn(60, 8, 8, 8, generator=g)
    y = torch.einsum("cd,ndhw->nchw", w, x).argmax(1)
    y_up = y.repeat_interleave(4, 1).repeat_interleave(4, 2)
    head = probe.train_segmentation_head(x[:40], y_up[:40], 3, iters=300, batch_size=16, lr=1e-2)
    s = segmentation_scores(probe.segmentation_confusion(head, x[40:], list(y_up[40:]), 3))
    # bilinear upsampling blurs block borders; the interior is right
    assert s["pixel_accuracy"] > 0.75 and s["miou"] > 0.6, s


def test_segmentation_head_random_labels_stay_near_chance():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(80, 16, 8, 8, generator=g)
    y = torch.randint(0, 4, (80, 8, 8), generator=g)
    head = probe.train_segmentation_head(x[:60], y[:60], 4, iters=200, batch_size=16, lr=1e-2)
    s = segmentation_scores(probe.segmentation_confusion(head, x[60:], list(y[60:]), 4))
    assert s["pixel_accuracy"] < 0.35, s  # chance = 0.25
    assert s["miou"] < 0.25, s  # chance IoU ~ 1/7


def test_depth_head_recovers_linearly_encoded_log_depth():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(60, 8, 6, 6, generator=g)
    a = torch.randn(8, generator=g) * 0.15
    depth = torch.exp(torch.einsum("d,ndhw->nhw", a, x) + 0.5)  # metres, around 1.6 m
    depth[:, 0, :] = 0.0  # invalid pixels are skipped in loss and metrics
    head = probe.train_depth_head(x[:40], depth[:40], iters=400, batch_size=16, lr=1e-2)
    m = probe.evaluate_depth(head, x[40:], list(depth[40:]))
    assert m["rmse"] < 0.05 and m["abs_rel"] < 0.02, m
    assert m["delta1"] > 0.99, m
    assert m["pixels"] == 20 * 5 * 6


def test_weighted_knn_on_separable_clusters():
    g = torch.Generator().manual_seed(5)
    centres = torch.randn(3, 32, generator=g) * 3
    ytr, yte = torch.arange(60) % 3, torch.arange(30) % 3
    xtr = centres[ytr] + torch.randn(60, 32, generator=g)
    xte = centres[yte] + torch.randn(30, 32, generator=g)
    assert knn_accuracy(xtr, ytr, xte, yte, 3) == 1.0
    assert knn_accuracy(xtr, ytr[torch.randperm(60, generator=g)], xte, yte, 3, k=1) < 0.8


# ---- end to end -----------------------------------------------------------------------------

COLOURS = {1: (220, 30, 30), 2: (30, 200, 40), 3: (40, 60, 230)}  # label -> RGB


def _scene(rng: np.random.Generator, size: int = 96):
    """Background (label 1, red), a green box (2) and a blue disc (3), with some noise."""
    img = np.empty((size, size, 3), np.uint8)
    lab = np.ones((size, size), np.uint8)
    x0, y0 = rng.integers(0, size // 2, 2)
    bw, bh = rng.integers(size // 4, size // 2, 2)
    lab[y0 : y0 + bh, x0 : x0 + bw] = 2
    cv2.circle(lab, (int(rng.integers(20, size - 20)), int(rng.integers(20, size - 20))), 14, 3, -1)
    lab[:3, :3] = 0  # a few ignore pixels
    for k, c in COLOURS.items():
        img[lab == k] = c
    img[lab == 0] = 128
    img = np.clip(img.astype(np.int16) + rng.integers(-10, 10, img.shape), 0, 255).astype(np.uint8)
    depth_mm = np.where(lab == 1, 3000, np.where(lab == 2, 1500, 800)).astype(np.uint16)
    return img, lab, depth_mm


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ade")
    rng = np.random.default_rng(0)
    for split, n in (("training", 8), ("validation", 4)):
        for sub in ("images", "annotations", "depth"):
            (root / sub / split).mkdir(parents=True)
        for i in range(n):
            img, lab, depth = _scene(rng)
            cv2.imwrite(str(root / "images" / split / f"{i:04d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            cv2.imwrite(str(root / "annotations" / split / f"{i:04d}.png"), lab)
            cv2.imwrite(str(root / "depth" / split / f"{i:04d}.png"), depth)
    return root


@pytest.fixture(scope="module")
def random_ckpt(tmp_path_factory):
    from vidistill.config import build_config
    from vidistill.train.checkpoint import write_random_init_checkpoint

    return write_random_init_checkpoint(build_config("cpu-tiny"), tmp_path_factory.mktemp("run") / "run")


def _cli(argv: list[str]) -> int:
    """The real ``vidistill eval`` CLI, in-process."""
    from vidistill import cli

    return cli.main(["eval", *argv])


def test_cli_probe_end_to_end(tiny_dataset, random_ckpt, tmp_path, capsys):
    out = tmp_path / "report.json"
    rc = _cli(["probe", str(random_ckpt.parent), "--data", str(tiny_dataset), "--iters", "50",
               "--batch-size", "4", "--output", str(out), "--device", "cpu"])
    assert rc == 0
    stdout = capsys.readouterr().out
    line = [s for s in stdout.splitlines() if s.startswith("mIoU ")]
    assert line, stdout
    report = json.loads(out.read_text())
    assert report["task"] == "segmentation" and report["num_classes"] == 3
    assert report["train_images"] == 8 and report["val_images"] == 4
    assert 0.0 <= report["miou"] <= 100.0
    assert float(line[0].split()[1]) == pytest.approx(report["miou"], abs=0.01)
    assert set(report["per_class_iou"]) == {"1", "2", "3"}
    assert report["grid"] == [6, 6]
    # colour regions are easy even for random features: well above chance
    assert report["pixel_accuracy"] > 50.0


def test_cli_depth_and_probe_resolution(tiny_dataset, random_ckpt, tmp_path, capsys):
    out = tmp_path / "depth.json"
    rc = _cli(["depth", str(random_ckpt), "--data", str(tiny_dataset), "--iters", "30", "--batch-size", "4",
               "--image-size", "128", "--output", str(out)])
    assert rc == 0
    stdout = capsys.readouterr().out
    report = json.loads(out.read_text())
    printed = dict(line.split() for line in stdout.splitlines() if line.startswith(("rmse ", "delta1 ")))
    assert float(printed["rmse"]) == pytest.approx(report["rmse"], abs=1e-4)
    assert float(printed["delta1"]) == pytest.approx(report["delta1"], abs=0.01)
    assert report["grid"] == [8, 8] and report["image_size"] == [128, 128]
    assert math.isfinite(report["rmse"]) and 0 <= report["delta1"] <= 100
    assert report["valid_pixels"] == 4 * 96 * 96


def test_export_folder_gives_the_checkpoint_features(random_ckpt, tmp_path):
    from runtime_fixtures import export_run

    from vidistill.runtime import load_encoder

    export = export_run(random_ckpt, tmp_path / "export")
    a = load_encoder(random_ckpt, backend="torch", device="cpu")
    b = load_encoder(export, backend="torch", device="cpu")
    c = load_encoder(export, backend="onnx", device="cpu")  # exactly the artefact a robot serves
    assert a.contract.model_name == b.contract.model_name and b.contract == c.contract
    imgs = [np.random.default_rng(i).integers(0, 255, (80, 100, 3), dtype=np.uint8) for i in range(3)]
    cls_a, pa = a.extract(imgs, batch_size=2)
    cls_b, pb = b.extract(imgs, batch_size=2)
    cls_c, pc = c.extract(imgs, batch_size=2)
    assert pa.shape == (3, 36, a.embed_dim)
    torch.testing.assert_close(pa, pb, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cls_a, cls_b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pc, pb, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("mode", ["letterbox", "crop"])
def test_eval_features_are_the_runtime_s_and_labels_cover_the_same_region(random_ckpt, tmp_path, mode):
    """Eval encodes an image file exactly as the runtime encodes the same pixels (one resize rule:
    runtime.preprocess), and a label map of that image lands where the rule places the image."""
    import dataclasses

    from vidistill.eval.features import read_rgb, to_input_aspect
    from vidistill.eval.tasks import CACHE_DTYPE, _features
    from vidistill.runtime import load_encoder
    from vidistill.runtime.backends.torch import TorchEncoder
    from vidistill.runtime.preprocess import fit_box

    base = load_encoder(random_ckpt, backend="torch", device="cpu")
    encoder = TorchEncoder(base.model, dataclasses.replace(base.contract, resize=mode), "cpu")
    path = tmp_path / "wide.png"  # 160x120 (W x H) into a square input: bands or a crop
    image = np.random.default_rng(4).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    ours = _features(encoder, [path], batch_size=1, desc="test")
    runtime = encoder.patch_maps(encoder.encode(read_rgb(path), as_tensor=True).patch_tokens).to(CACHE_DTYPE)
    assert torch.equal(ours, runtime)
    # The label map (image-sized) is cut or padded to the same region, in the input's proportions.
    label = to_input_aspect(encoder, np.ones((120, 160), np.uint8), label=True)
    place = fit_box((120, 160), encoder.image_size, mode)
    ih, iw = encoder.image_size
    rows = np.flatnonzero(label.any(axis=1))
    assert label.shape[1] * ih == label.shape[0] * iw  # the input's aspect
    if mode == "letterbox":  # 160x120 fits as 96x72 at rows 12..83: the label's own rows 20..139 of 160
        assert (rows[0] / label.shape[0], (rows[-1] + 1) / label.shape[0]) == (place.top / ih, (place.top + place.h) / ih)
    else:
        assert label.shape == (place.y1 - place.y0, place.x1 - place.x0) and label.all()


def test_cli_probe_onnx_backend_probes_the_onnx_artefact(tiny_dataset, random_ckpt, tmp_path, capsys):
    from runtime_fixtures import export_run

    export = export_run(random_ckpt, tmp_path / "export")
    reports = {}
    for backend in ("torch", "onnx"):
        out = tmp_path / f"{backend}.json"
        rc = _cli(["probe", str(export), "--data", str(tiny_dataset), "--iters", "30", "--batch-size", "4",
                   "--backend", backend, "--output", str(out), "--device", "cpu"])
        assert rc == 0
        reports[backend] = json.loads(out.read_text())
    assert reports["onnx"]["backend"] == "onnx" and reports["onnx"]["encoder"].endswith("encoder.onnx")
    assert reports["torch"]["encoder"].endswith("encoder.safetensors")
    assert reports["onnx"]["miou"] == pytest.approx(reports["torch"]["miou"], abs=1.0)  # same features
    rc = _cli(["probe", str(export), "--data", str(tiny_dataset), "--backend", "onnx", "--image-size", "128"])
    assert rc != 0 and "fixed at 96x96" in capsys.readouterr().err


def test_export_folder_with_wrong_weights_is_a_clear_error(random_ckpt, tmp_path):
    from runtime_fixtures import export_run
    from safetensors.torch import save_file

    from vidistill.runtime import load_encoder

    export_run(random_ckpt, tmp_path / "export", onnx=False)
    save_file({"foo": torch.zeros(2)}, str(tmp_path / "export" / "encoder.safetensors"))
    with pytest.raises(VidistillError, match="encoder.safetensors"):
        load_encoder(tmp_path / "export")


@pytest.mark.parametrize(
    "case, message",
    [("missing", "no such data folder"), ("wrong_layout", "images/training"), ("no_ckpt", "no such file or folder")],
)
def test_cli_errors_are_clear(case, message, tiny_dataset, random_ckpt, tmp_path, capsys):
    data, enc = str(tiny_dataset), str(random_ckpt)
    if case == "missing":
        data = str(tmp_path / "nope")
    elif case == "wrong_layout":
        (tmp_path / "train" / "a").mkdir(parents=True)
        data = str(tmp_path)
    else:
        enc = str(tmp_path / "missing.pt")
    rc = _cli(["probe", enc, "--data", data, "--iters", "5"])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and "Traceback" not in err


def test_cli_knn_on_separable_colour_folders(random_ckpt, tmp_path, capsys):
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 4)):
        for name, colour in (("red", (40, 40, 220)), ("blue", (220, 60, 30))):  # BGR
            d = tmp_path / "folders" / split / name
            d.mkdir(parents=True)
            for i in range(n):
                img = np.clip(np.array(colour) + rng.integers(-25, 25, (64, 64, 3)), 0, 255).astype(np.uint8)
                cv2.imwrite(str(d / f"{i}.jpg"), img)
    out = tmp_path / "knn.json"
    rc = _cli(["knn", str(random_ckpt), "--data", str(tmp_path / "folders"), "--output", str(out)])
    assert rc == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("top1 ")]
    report = json.loads(out.read_text())
    assert len(printed) == 1 and float(printed[0].split()[1]) == pytest.approx(report["top1"], abs=0.01)
    assert report["classes"] == ["blue", "red"]
    assert report["top1"] >= 90.0


def test_a_class_without_training_pixels_is_never_predicted():
    """Its logit is the head's initial bias: made to win everywhere here, it is still masked."""
    g = torch.Generator().manual_seed(4)
    w = torch.randn(3, 8, generator=g)
    x = torch.randn(60, 8, 6, 6, generator=g)
    y = torch.einsum("cd,ndhw->nchw", w, x).argmax(1) + 1  # classes 1, 2, 3 of 4; class 0 never
    head = probe.train_segmentation_head(x[:40], y[:40], 4, iters=50, batch_size=16, lr=1e-2)
    with torch.no_grad():
        head.conv.bias[0] = 1e3
    sizes = [(6, 6)] * 20
    assert all((p == 0).all() for p in probe.predict_segmentation(head, x[40:], sizes))
    trained = torch.tensor([False, True, True, True])
    preds = probe.predict_segmentation(head, x[40:], sizes, classes=trained)
    assert not any((p == 0).any() for p in preds)
    s = segmentation_scores(probe.segmentation_confusion(head, x[40:], list(y[40:]), 4, classes=trained))
    assert s["per_class_iou"][0] is None and s["classes_scored"] == 3


def test_probe_report_names_the_label_ids_it_had_no_training_pixels_of(tmp_path, random_ckpt):
    from vidistill.eval.tasks import ProbeSettings, segmentation_probe
    from vidistill.runtime import load_encoder

    rng = np.random.default_rng(1)
    for split, n in (("training", 4), ("validation", 2)):
        for sub in ("images", "annotations"):
            (tmp_path / sub / split).mkdir(parents=True)
        for i in range(n):
            img, lab, _ = _scene(rng)
            lab[lab == 1] = 0  # the background is "ignore": label id 1 never appears
            cv2.imwrite(str(tmp_path / "images" / split / f"{i:04d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            cv2.imwrite(str(tmp_path / "annotations" / split / f"{i:04d}.png"), lab)
    encoder = load_encoder(random_ckpt, backend="torch", device="cpu")
    report = segmentation_probe(encoder, tmp_path, ProbeSettings(iters=20, batch_size=4))
    assert report["num_classes"] == 3 and report["untrained_classes"] == [1]
    assert report["per_class_iou"]["1"] is None and report["classes_scored"] == 2
