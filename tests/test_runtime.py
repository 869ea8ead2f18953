"""The runtime across timm ViT families and camera shapes, on artefacts made by the real exporter:
patch 14 + register tokens (DINOv2-style), RoPE (timm's EVA-based DINOv3), a non-square input;
plain-timm reload without vidistill; wrappers with the right grid; several cameras in one call."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env
from runtime_fixtures import export_run

from vidistill.config import build_config
from vidistill.contract import as_hw
from vidistill.robot_adapters import FeatureObservationWrapper, VectorFeatureObservationWrapper
from vidistill.runtime import load_encoder
from vidistill.runtime.torch_model import TokenEncoder, load_teacher_backbone
from vidistill.train.checkpoint import write_random_init_checkpoint

TINY = {"embed_dim": 64, "depth": 2, "num_heads": 2}
FAMILIES = {
    # name: (timm arch, training size, export size (H, W), expected grid, prefix tokens)
    "patch14_registers": ("vit_small_patch14_reg4_dinov2", 56, "112", (8, 8), 5),
    "rope_dinov3": ("vit_small_patch16_dinov3", 64, "64x96", (4, 6), 5),
}


def _checkpoint(root, arch, size):
    cfg = build_config("cpu-tiny", overrides={
        "model.arch": arch, "model.model_args": TINY, "model.out_dim": 256,
        "data.global_size": size, "data.local_size": size // 2,
    })
    return write_random_init_checkpoint(cfg, root / "run")


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request, tmp_path_factory):
    arch, size, export_size, grid, prefix = FAMILIES[request.param]
    root = tmp_path_factory.mktemp(request.param)
    ckpt = _checkpoint(root, arch, size)
    export = export_run(ckpt, root / "export", image_size=export_size)
    return {"arch": arch, "ckpt": ckpt, "export": export, "grid": grid, "prefix": prefix,
            "hw": as_hw(export_size)}


def test_family_exports_with_onnx_parity(family):
    manifest = json.loads((family["export"] / "manifest.json").read_text())
    contract = manifest["contract"]
    assert contract["model_name"] == family["arch"] and contract["model_args"] == TINY
    assert contract["num_prefix_tokens"] == family["prefix"] and tuple(contract["grid_size"]) == family["grid"]
    assert tuple(contract["image_size"]) == family["hw"]
    assert max(manifest["parity"]["onnxruntime"]["max_abs_diff"].values()) <= 1e-4
    assert max(manifest["parity"]["torch"]["max_abs_diff"].values()) <= 1e-4
    onnx_enc = load_encoder(family["export"], backend="onnx", device="cpu")
    torch_enc = load_encoder(family["ckpt"], backend="torch", device="cpu", image_size=family["hw"])
    frames = np.random.default_rng(0).integers(0, 256, (2, *family["hw"], 3), dtype=np.uint8)
    a, b = onnx_enc.encode(frames), torch_enc.encode(frames)
    h, w = family["grid"]
    assert a.patch_tokens.shape == (2, h * w, 64) and a.grid().shape == (2, 64, h, w)
    np.testing.assert_allclose(a.patch_tokens, b.patch_tokens, atol=1e-4)
    env = FeatureObservationWrapper(CameraEnv(), onnx_enc, pixel_key="front", output="grid")
    assert env.observation_space["features"].shape == (64, h, w)  # e.g. 8x8 for 112 px / patch 14
    assert env.reset(seed=0)[0]["features"].shape == (64, h, w)


def test_family_loads_in_plain_timm_without_vidistill(family, tmp_path):
    """config.json + encoder.safetensors: the original model name plus our weights, timm alone."""
    model, _, _ = load_teacher_backbone(family["ckpt"])
    x = torch.randn(2, 3, *family["hw"])
    np.save(tmp_path / "x.npy", x.numpy())
    code = textwrap.dedent(f"""
        import json, sys
        import numpy as np, timm, torch
        d = {str(family["export"])!r}
        cfg = json.load(open(d + "/config.json"))
        models = {{
            "local-dir": timm.create_model("local-dir:" + d, pretrained=True),
            "name + weights": timm.create_model(
                cfg["architecture"], pretrained=True, num_classes=0, **cfg["model_args"],
                pretrained_cfg_overlay=dict(file=d + "/encoder.safetensors", custom_load=False)),
        }}
        x = torch.from_numpy(np.load({str(tmp_path / "x.npy")!r}))
        with torch.no_grad():
            np.savez({str(tmp_path / "out.npz")!r}, **{{k: m.eval().forward_features(x).numpy() for k, m in models.items()}})
        assert not [m for m in sys.modules if m.startswith("vidistill")], "vidistill was imported"
    """)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, timeout=300)
    with torch.no_grad():  # the training-time (dynamic-size) teacher at the export size
        ref = model.forward_features(x).numpy()
    outputs = np.load(tmp_path / "out.npz")
    assert set(outputs.files) == {"local-dir", "name + weights"}
    for name in outputs.files:
        assert outputs[name].shape == ref.shape and np.abs(outputs[name] - ref).max() <= 1e-4, name


class CameraEnv(gym.Env):
    """A Dict observation with two cameras of different shapes (4:3 front, square wrist) + proprio."""

    metadata = {"render_modes": [], "render_fps": 10}
    FRONT, WRIST = (60, 80, 3), (48, 48, 3)

    def __init__(self, episode_len: int = 4):
        self.episode_len = episode_len
        self.observation_space = spaces.Dict({
            "front": spaces.Box(0, 255, self.FRONT, np.uint8),
            "wrist": spaces.Box(0, 255, self.WRIST, np.uint8),
            "proprio": spaces.Box(-1.0, 1.0, (3,), np.float32),
        })
        self.action_space = spaces.Discrete(2)

    def _obs(self):
        rng = self.np_random
        return {"front": rng.integers(0, 256, self.FRONT, dtype=np.uint8),
                "wrist": rng.integers(0, 256, self.WRIST, dtype=np.uint8),
                "proprio": np.full(3, self._t / self.episode_len, np.float32)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self._obs(), {}

    def step(self, action):
        self._t += 1
        return self._obs(), 0.0, self._t >= self.episode_len, False, {}


class CountingEncoder:
    """The real encoder, counting its encode calls (duck-typed: the wrappers accept it)."""

    def __init__(self, encoder):
        self.inner, self.calls = encoder, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode(self, images, **kw):
        self.calls.append(len(images))
        return self.inner.encode(images, **kw)


@pytest.fixture(scope="module")
def non_square_export(tmp_path_factory):
    """cpu-tiny (ViT-Ti/16) exported at 96x128 (H x W, a 3:4 camera): a 6x8 grid."""
    root = tmp_path_factory.mktemp("non_square")
    ckpt = write_random_init_checkpoint(build_config("cpu-tiny"), root / "run")
    return ckpt, export_run(ckpt, root / "export", image_size="96x128")


def test_non_square_export_parity_and_faithful_frames(non_square_export):
    ckpt, export = non_square_export
    manifest = json.loads((export / "manifest.json").read_text())
    assert manifest["contract"]["image_size"] == [96, 128] and manifest["contract"]["grid_size"] == [6, 8]
    assert max(manifest["parity"]["onnxruntime"]["max_abs_diff"].values()) <= 1e-4
    config = json.loads((export / "config.json").read_text())
    assert config["pretrained_cfg"]["input_size"] == [3, 96, 128] and config["model_args"]["img_size"] == [96, 128]
    onnx_enc = load_encoder(export, backend="onnx", device="cpu")
    torch_enc = load_encoder(export, backend="torch", device="cpu")
    frame = np.random.default_rng(1).integers(0, 256, (1, 120, 160, 3), dtype=np.uint8)  # 4:3, same aspect
    pixels = onnx_enc.preprocess(frame)
    assert pixels.shape == (1, 3, 96, 128)
    from PIL import Image  # same aspect: a plain resize, nothing cropped or squashed

    resized = np.stack([np.asarray(Image.fromarray(frame[0, ..., c].astype(np.float32), mode="F").resize(
        (128, 96), Image.Resampling.BICUBIC)) for c in range(3)])
    np.testing.assert_allclose(pixels[0], (resized / 255 - np.array(onnx_enc.mean)[:, None, None])
                               / np.array(onnx_enc.std)[:, None, None], atol=1e-4)
    np.testing.assert_allclose(torch_enc.encode(torch.from_numpy(frame)).cls, onnx_enc.encode(frame).cls, atol=1e-4)
    env = FeatureObservationWrapper(CameraEnv(), onnx_enc, pixel_key="front", output="grid")
    assert env.observation_space["features"].shape == (192, 6, 8)


def _check_env(env):
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        check_env(env, skip_render_check=True)


def test_two_cameras_one_encode_call_per_step(non_square_export):
    _, export = non_square_export
    encoder = load_encoder(export, backend="onnx", device="cpu")
    counting = CountingEncoder(encoder)
    env = FeatureObservationWrapper(CameraEnv(), counting, output="pooled")
    assert set(env.observation_space.spaces) == {"front", "wrist", "proprio"}
    assert env.observation_space["front"].shape == (192,) and env.observation_space["wrist"].shape == (192,)
    raw_env = CameraEnv()
    obs, _ = env.reset(seed=3)
    raw, _ = raw_env.reset(seed=3)
    for _ in range(3):
        for cam in ("front", "wrist"):  # each camera's features under its own key
            np.testing.assert_allclose(obs[cam], encoder.encode(raw[cam]).pooled()[0], atol=1e-5)
        np.testing.assert_array_equal(obs["proprio"], raw["proprio"])
        obs, *_ = env.step(0)
        raw, *_ = raw_env.step(0)
    assert counting.calls == [2] * 4  # reset + 3 steps: ONE call with both cameras each time
    _check_env(FeatureObservationWrapper(CameraEnv(), encoder, output="cls"))
    kept = FeatureObservationWrapper(CameraEnv(), encoder, output="cls", keep_pixels=True)
    assert {"front", "wrist", "front_features", "wrist_features", "proprio"} == set(kept.observation_space.spaces)


def test_two_cameras_vector_env_one_call(non_square_export):
    _, export = non_square_export
    encoder = load_encoder(export, backend="onnx", device="cpu")
    counting = CountingEncoder(encoder)
    venv = gym.vector.SyncVectorEnv([lambda: CameraEnv(episode_len=2) for _ in range(3)])
    env = VectorFeatureObservationWrapper(venv, counting, output="grid")
    assert env.observation_space["front"].shape == (3, 192, 6, 8)
    obs, _ = env.reset(seed=0)
    raw_venv = gym.vector.SyncVectorEnv([lambda: CameraEnv(episode_len=2) for _ in range(3)])
    raw, _ = raw_venv.reset(seed=0)
    for cam in ("front", "wrist"):
        np.testing.assert_allclose(obs[cam], encoder.encode(raw[cam]).grid(), atol=1e-5)
    for _ in range(3):
        obs, *_ = env.step(np.zeros(3, dtype=np.int64))
        assert obs in env.observation_space
    assert counting.calls == [6] * 4  # 3 envs x 2 cameras in ONE call per reset / step


def test_torch_module_is_the_export_module(non_square_export):
    """The torch backend serves the same TokenEncoder export traced (not a second model copy)."""
    _, export = non_square_export
    enc = load_encoder(export, backend="torch", device="cpu")
    assert isinstance(enc.model, TokenEncoder) and enc.precision == "fp32"
    assert tuple(enc.model.backbone.patch_embed.grid_size) == (6, 8)


def test_serving_a_run_folder_imports_no_training_code(non_square_export):
    """A robot with only a run folder serves its checkpoint with torch + timm; nothing of the
    trainer, config, objective, data pipeline or model package is imported."""
    ckpt, _ = non_square_export
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        from vidistill.robot_adapters import FeatureObservationWrapper, VisionTower
        from vidistill.runtime import load_encoder
        enc = load_encoder({str(ckpt.parent)!r}, device="cpu")
        assert enc.backend == "torch", enc
        assert enc.encode(np.zeros((1, 96, 96, 3), np.uint8)).grid().shape == (1, 192, 6, 6)
        assert VisionTower.from_pretrained({str(ckpt.parent)!r}).num_patches == 36
        training = sorted(m for m in sys.modules if m.split(".")[:2] in (
            ["vidistill", "train"], ["vidistill", "objective"], ["vidistill", "data"], ["vidistill", "config"],
            ["vidistill", "model"], ["vidistill", "checkpoint"], ["vidistill", "export"]))
        assert not training, training
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
