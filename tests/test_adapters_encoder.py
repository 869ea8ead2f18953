"""Encoder runtime: backends agree, inputs are validated strictly, artefacts are found."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import runtime_fixtures
import torch
from runtime_fixtures import random_images

from vidistill.errors import CheckpointError
from vidistill.runtime import (
    Features,
    MissingBackendError,
    choose_backend,
    grid_to_tokens,
    load_encoder,
    tokens_to_grid,
)
from vidistill.runtime.artefacts import find_artefacts
from vidistill.runtime.preprocess import as_image_batch

ATOL = 1e-4  # fp32 ORT vs torch: ~1e-6..1e-4

# session fixtures shared by the adapter tests
artefacts = runtime_fixtures.artefacts
onnx_encoder = runtime_fixtures.onnx_encoder
torch_encoder = runtime_fixtures.torch_encoder



def test_properties_come_from_the_contract(onnx_encoder):
    e = onnx_encoder
    assert (e.embed_dim, e.patch_size, e.image_size, e.grid_size, e.num_patches) == (192, 16, (96, 96), (6, 6), 36)
    assert e.mean == e.contract.mean and e.std == e.contract.std
    assert e.backend == "onnx" and e.device == "cpu"


@pytest.mark.parametrize("torch_source", ["run", "checkpoint", "export"])
def test_torch_and_onnx_backends_agree(artefacts, onnx_encoder, torch_source):
    torch_enc = load_encoder(artefacts[torch_source], backend="torch", device="cpu")
    assert torch_enc.contract == onnx_encoder.contract
    images = random_images(5)
    a, b = onnx_encoder.encode(images), torch_enc.encode(images)
    assert a.cls.shape == (5, 192) and a.patch_tokens.shape == (5, 36, 192)
    assert a.cls.dtype == np.float32 and b.cls.dtype == np.float32  # numpy by default, any backend
    np.testing.assert_allclose(a.cls, b.cls, atol=ATOL)
    np.testing.assert_allclose(a.patch_tokens, b.patch_tokens, atol=ATOL)


def test_features_views(onnx_encoder):
    f = onnx_encoder.encode(random_images(3))
    assert f.grid().shape == (3, 192, 6, 6)
    assert f.pooled().shape == (3, 192)
    np.testing.assert_allclose(f.pooled(), f.patch_tokens.mean(axis=1))
    # grid is row-major: token r * w + c sits at grid[:, :, r, c]
    np.testing.assert_array_equal(f.grid()[:, :, 1, 4], f.patch_tokens[:, 1 * 6 + 4])
    assert len(f) == 3 and f[1].cls.shape == (1, 192)
    for name, shape in {"grid": (3, 192, 6, 6), "tokens": (3, 36, 192), "cls": (3, 192), "pooled": (3, 192)}.items():
        assert f.select(name).shape == shape
    with pytest.raises(ValueError, match="unknown output"):
        f.select("mean")


def test_tokens_to_grid_numpy_and_torch_roundtrip():
    tokens = np.arange(2 * 6 * 4, dtype=np.float32).reshape(2, 6, 4)  # (N, P=2x3, D)
    grid = tokens_to_grid(tokens, (2, 3))
    assert grid.shape == (2, 4, 2, 3) and grid.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(grid_to_tokens(grid), tokens)
    t = torch.from_numpy(tokens)
    tg = tokens_to_grid(t, (2, 3))
    assert isinstance(tg, torch.Tensor)
    np.testing.assert_array_equal(tg.numpy(), grid)
    assert tokens_to_grid(tokens[0], (2, 3)).shape == (4, 2, 3)
    with pytest.raises(ValueError, match="2x2 grid"):
        tokens_to_grid(tokens, 2)


def test_accepted_input_forms_give_the_same_features(onnx_encoder, torch_encoder):
    from PIL import Image

    images = random_images(2)
    ref = onnx_encoder.encode(images)
    chw = images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    forms = {
        "numpy uint8 batch": images,
        "torch uint8 batch": torch.from_numpy(images),
        "numpy float CHW [0,1]": chw,
        "torch float CHW [0,1]": torch.from_numpy(chw),
        "list of uint8": [images[0], images[1]],
        "PIL list": [Image.fromarray(images[0]), Image.fromarray(images[1])],
    }
    for enc in (onnx_encoder, torch_encoder):
        for name, x in forms.items():
            np.testing.assert_allclose(enc.encode(x).cls, ref.cls, atol=ATOL, err_msg=f"{enc.backend}: {name}")
    single = onnx_encoder.encode(images[0])
    assert single.cls.shape == (1, 192)
    np.testing.assert_allclose(single.cls[0], ref.cls[0], atol=1e-5)
    np.testing.assert_allclose(onnx_encoder.encode(Image.fromarray(images[1])).cls[0], ref.cls[1], atol=1e-5)


def test_as_tensor_returns_torch(torch_encoder, onnx_encoder):
    for enc in (torch_encoder, onnx_encoder):
        f = enc.encode(random_images(2), as_tensor=True)
        assert isinstance(f.cls, torch.Tensor) and isinstance(f.patch_tokens, torch.Tensor)
        assert isinstance(f.grid(), torch.Tensor) and f.grid().shape == (2, 192, 6, 6)
        assert f.pooled().shape == (2, 192)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((2, 3, 96, 96), np.uint8), "channels-first"),
        (np.zeros((2, 96, 96, 4), np.uint8), "RGBA"),
        (np.zeros((96, 96), np.uint8), "3 dims"),
        (np.zeros((2, 96, 96, 3), np.float32), "looks channels-last"),
        (np.zeros((2, 96, 96, 3), np.int64), "dtype int64"),
        (np.full((1, 3, 96, 96), 255.0, np.float32), "max is 255"),
        (np.full((1, 3, 96, 96), -1.5, np.float32), "already normalised"),
        (torch.zeros(2, 3, 96, 96, dtype=torch.uint8), "torch.Tensor of dtype torch.uint8"),
        ("image.png", "got str"),
    ],
)
def test_wrong_layout_or_dtype_is_a_clear_error(onnx_encoder, bad, match):
    with pytest.raises(ValueError, match=match) as info:
        onnx_encoder.encode(bad)
    assert "expected uint8 RGB images channels-last" in str(info.value)


def _reference_preprocess(images: np.ndarray, encoder) -> np.ndarray:
    """An independent implementation of the contract's rule: centre crop to the input's aspect,
    torch's antialiased bicubic (PIL's kernel, what training's torchvision resize uses), mean/std."""
    import torch.nn.functional as F

    h, w = encoder.image_size
    n, sh, sw, _ = images.shape
    if sw * h > sh * w:
        cw = round(sh * w / h)
        images = images[:, :, (sw - cw) // 2 : (sw - cw) // 2 + cw]
    elif sw * h < sh * w:
        ch = round(sw * h / w)
        images = images[:, (sh - ch) // 2 : (sh - ch) // 2 + ch]
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(h, w), mode="bicubic", antialias=True, align_corners=False)
    mean = torch.tensor(encoder.mean).view(1, 3, 1, 1)
    std = torch.tensor(encoder.std).view(1, 3, 1, 1)
    return ((x / 255 - mean) / std).numpy()


def test_wrong_size_is_resized_by_the_contract_rule_with_one_warning(artefacts, caplog):
    enc = load_encoder(artefacts["export"], backend="onnx", device="cpu")
    assert (enc.contract.resize, enc.contract.interpolation) == ("crop", "bicubic")
    big = random_images(2, size=200)
    with caplog.at_level(logging.WARNING, logger="vidistill.runtime"):
        f = enc.encode(big)
        enc.encode(big)
        enc.encode(random_images(1, size=64))
    warnings = [r for r in caplog.records if "encoder takes" in r.getMessage()]
    assert len(warnings) == 1 and "200x200" in warnings[0].getMessage() and "96x96" in warnings[0].getMessage()
    # Same aspect: only resized; the warning must not claim a crop or ask for another export.
    assert "same aspect" in warnings[0].getMessage() and "cropped" not in warnings[0].getMessage()
    assert f.cls.shape == (2, 192)
    np.testing.assert_allclose(enc.preprocess(big), _reference_preprocess(big, enc), atol=2e-3)
    mixed = enc.encode([big[0], random_images(1, size=64)[0], random_images(1)[0]])  # sizes may differ in a list
    assert mixed.cls.shape == (3, 192)


def test_the_resize_warning_names_the_crop_only_when_the_aspect_differs(artefacts, caplog):
    enc = load_encoder(artefacts["export"], backend="onnx", device="cpu")
    with caplog.at_level(logging.WARNING, logger="vidistill.runtime"):
        enc.encode(np.zeros((1, 120, 160, 3), np.uint8))
    message = next(r.getMessage() for r in caplog.records if "encoder takes" in r.getMessage())
    assert "120x160" in message and "centre-cropped" in message and "--image-size HxW" in message


def test_a_4_3_camera_frame_is_cropped_not_squashed(onnx_encoder):
    """160x120 (W x H) into a square encoder: the centre 120x120 is used, nothing is stretched."""
    frame = np.random.default_rng(5).integers(0, 256, (1, 120, 160, 3), dtype=np.uint8)
    centre = frame[:, :, 20:140]
    np.testing.assert_allclose(onnx_encoder.preprocess(frame), onnx_encoder.preprocess(centre), atol=1e-6)
    np.testing.assert_allclose(onnx_encoder.preprocess(frame), _reference_preprocess(frame, onnx_encoder), atol=2e-3)
    from PIL import Image

    stretched = np.asarray(Image.fromarray(frame[0]).resize((96, 96), Image.Resampling.BICUBIC))[None]
    assert np.abs(onnx_encoder.preprocess(frame) - onnx_encoder.preprocess(stretched)).max() > 0.5


@pytest.mark.parametrize("mode", ["letterbox", "stretch"])
def test_every_resize_rule_is_the_same_on_host_and_device(torch_encoder, mode):
    import dataclasses

    from vidistill.runtime.backends.torch import TorchEncoder

    enc = TorchEncoder(torch_encoder.model, dataclasses.replace(torch_encoder.contract, resize=mode), "cpu")
    frame = np.random.default_rng(2).integers(0, 256, (1, 120, 160, 3), dtype=np.uint8)
    host = enc.preprocess(frame)
    device = enc._preprocess_tensor(as_image_batch(torch.from_numpy(frame))).numpy()
    np.testing.assert_allclose(host, device, atol=1e-5)
    if mode == "letterbox":  # 160x120 fits as 96x72: bands of 12 rows above and below, 0 = the mean colour
        assert np.all(host[..., :12, :] == 0) and np.all(host[..., -12:, :] == 0)
        assert np.abs(host[..., 12:84, :]).max() > 0.5
    else:
        assert np.abs(host - torch_encoder.preprocess(frame)).max() > 0.1  # not the crop


@pytest.mark.parametrize("shape", [(200, 200), (64, 64), (150, 150), (120, 160), (160, 120)])
def test_torch_tensors_resize_like_the_host_path(torch_encoder, shape):
    """Device-side resize (matrix products with PIL's coefficients) = the host path (PIL)."""
    images = np.random.default_rng(3).integers(0, 256, (2, *shape, 3), dtype=np.uint8)
    pa = torch_encoder.preprocess(images)
    pb = torch_encoder._preprocess_tensor(as_image_batch(torch.from_numpy(images))).numpy()
    np.testing.assert_allclose(pa, pb, atol=1e-5)
    a = torch_encoder.encode(images)  # host path
    b = torch_encoder.encode(torch.from_numpy(images))  # device path
    c = torch_encoder.encode(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)
    np.testing.assert_allclose(a.cls, b.cls, atol=1e-4)
    np.testing.assert_allclose(a.cls, c.cls, atol=1e-4)


def test_preprocess_follows_the_contract(onnx_encoder):
    img = np.zeros((1, 96, 96, 3), np.uint8)
    img[..., 0] = 255
    x = onnx_encoder.preprocess(img)
    assert x.shape == (1, 3, 96, 96) and x.dtype == np.float32 and x.flags["C_CONTIGUOUS"]
    mean, std = onnx_encoder.mean, onnx_encoder.std
    np.testing.assert_allclose(x[0, :, 0, 0], [(1 - mean[0]) / std[0], -mean[1] / std[1], -mean[2] / std[2]], rtol=1e-5)


def test_find_artefacts_and_auto_backend(artefacts):
    export = find_artefacts(artefacts["export"])
    assert export.onnx and export.safetensors and export.engine is None
    assert choose_backend(export) == "onnx"  # no TensorRT here: ORT beats torch
    run = find_artefacts(artefacts["run"])
    assert run.checkpoint and choose_backend(run) == "torch"
    assert find_artefacts(artefacts["onnx"]).onnx == artefacts["onnx"]
    assert load_encoder(artefacts["onnx"]).backend == "onnx"
    assert load_encoder(artefacts["run"]).backend == "torch"


def test_missing_artefact_for_backend(artefacts, tmp_path):
    with pytest.raises(CheckpointError, match="encoder.onnx"):
        load_encoder(artefacts["run"], backend="onnx")
    with pytest.raises(CheckpointError, match="TensorRT engine"):
        load_encoder(artefacts["export"], backend="tensorrt")  # an export without encoder.engine
    with pytest.raises(CheckpointError, match="no such file"):
        load_encoder(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="no encoder artefact"):
        load_encoder(tmp_path)
    with pytest.raises(ValueError, match="backend must be one of"):
        load_encoder(artefacts["export"], backend="tflite")


def test_engine_without_tensorrt_names_what_to_install(artefacts, tmp_path, monkeypatch):
    """An artefact whose runtime is missing: the error says what to pip install."""
    folder = tmp_path / "engine_only"
    folder.mkdir()
    (folder / "encoder.engine").write_bytes(b"not really an engine")
    shutil.copy(artefacts["export"] / "config.json", folder / "config.json")
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", None)  # import tensorrt -> ImportError
    with pytest.raises(MissingBackendError, match="pip install tensorrt"):
        load_encoder(folder)
    with pytest.raises(MissingBackendError, match="pip install tensorrt"):
        load_encoder(folder / "encoder.engine", backend="tensorrt")
    with pytest.raises(ImportError):  # also an ImportError
        load_encoder(folder, backend="tensorrt")


def test_onnx_without_onnxruntime_falls_back_or_names_install(artefacts, tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "onnxruntime" else real(n, *a))
    assert load_encoder(artefacts["export"]).backend == "torch"  # auto falls back to the safetensors
    only_onnx = tmp_path / "only_onnx"
    only_onnx.mkdir()
    shutil.copy(artefacts["onnx"], only_onnx / "encoder.onnx")
    with pytest.raises(MissingBackendError, match="pip install onnxruntime"):
        load_encoder(only_onnx)
    with pytest.raises(MissingBackendError, match="onnxruntime-gpu"):
        load_encoder(only_onnx, backend="onnx")


def test_onnx_needs_cuda_provider_for_cuda_device(artefacts):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime-gpu installed")
    with pytest.raises(MissingBackendError, match="onnxruntime-gpu"):
        load_encoder(artefacts["onnx"], backend="onnx", device="cuda")


def test_onnx_without_contract_is_rejected(artefacts, tmp_path):
    import onnx

    model = onnx.load(str(artefacts["onnx"]))
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "bare.onnx"))
    with pytest.raises(CheckpointError, match="no encoder contract"):
        load_encoder(tmp_path / "bare.onnx")


def test_onnx_contract_from_metadata_only(artefacts, tmp_path):
    """A lone .onnx (no config.json beside it) carries its own contract."""
    shutil.copy(artefacts["onnx"], tmp_path / "model.onnx")
    enc = load_encoder(tmp_path / "model.onnx")
    assert enc.contract.image_size == (96, 96) and enc.grid_size == (6, 6)
    assert isinstance(enc.encode(random_images(1)), Features)


def test_artefacts_written_by_vidistill_export(artefacts, tmp_path):
    """The real `vidistill export` layout: a run folder serves its export/ through ONNX Runtime."""
    from vidistill.export.pipeline import ExportOptions, export_checkpoint

    run = tmp_path / "run"
    shutil.copytree(artefacts["run"], run)
    export_checkpoint(ExportOptions(source=run / "checkpoint.pt", parity_batches=(2,)))
    served = load_encoder(run, device="cpu")
    assert served.backend == "onnx" and "export" in served.source
    reference = load_encoder(run / "checkpoint.pt", backend="torch", device="cpu")
    from_safetensors = load_encoder(run / "export", backend="torch", device="cpu")
    images = random_images(3)
    np.testing.assert_allclose(served.encode(images).patch_tokens, reference.encode(images).patch_tokens, atol=ATOL)
    np.testing.assert_allclose(from_safetensors.encode(images).cls, reference.encode(images).cls, atol=1e-5)


def test_empty_batch(onnx_encoder):
    f = onnx_encoder.encode(np.zeros((0, 96, 96, 3), np.uint8))
    assert f.cls.shape == (0, 192) and f.patch_tokens.shape == (0, 36, 192) and f.grid().shape == (0, 192, 6, 6)


def test_onnx_serving_never_imports_torch(artefacts):
    """A robot running the ONNX artefact needs no torch (ARCHITECTURE.md): block it and serve."""
    import subprocess
    import sys

    code = f"""
import sys
sys.modules["torch"] = None  # any `import torch` now fails
import numpy as np
import gymnasium as gym
from vidistill.robot_adapters import FeatureObservationWrapper, VectorFeatureObservationWrapper
from vidistill.runtime import load_encoder
enc = load_encoder({str(artefacts["export"])!r})
assert enc.backend == "onnx", enc
f = enc.encode(np.zeros((2, 96, 96, 3), np.uint8))
assert f.grid().shape == (2, 192, 6, 6) and f.pooled().shape == (2, 192)
class E(gym.Env):
    observation_space = gym.spaces.Box(0, 255, (96, 96, 3), np.uint8)
    action_space = gym.spaces.Discrete(2)
    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros((96, 96, 3), np.uint8), {{}}
    def step(self, a):
        return np.zeros((96, 96, 3), np.uint8), 0.0, False, False, {{}}
env = FeatureObservationWrapper(E(), enc, output="tokens")
assert env.reset()[0].shape == (36, 192)
venv = VectorFeatureObservationWrapper(gym.vector.SyncVectorEnv([E, E]), enc)
assert venv.reset()[0].shape == (2, 192, 6, 6)
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
