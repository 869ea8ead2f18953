"""VisionTower: prismatic-style interface, frozen by default, trainable projector."""

from __future__ import annotations

import numpy as np
import pytest
import runtime_fixtures
import torch
from runtime_fixtures import random_images

from vidistill.robot_adapters import VisionTower

# session fixtures shared by the adapter tests
artefacts = runtime_fixtures.artefacts
onnx_encoder = runtime_fixtures.onnx_encoder



@pytest.fixture(scope="module")
def tower(artefacts):
    return VisionTower.from_pretrained(artefacts["export"])


def test_properties(tower):
    assert (tower.embed_dim, tower.num_patches, tower.image_size, tower.patch_size) == (192, 36, (96, 96), 16)
    assert tower.default_image_resolution == (3, 96, 96)
    assert tower.grid_size == (6, 6) and tower.out_dim == 192
    assert tower.half_precision_dtype == torch.bfloat16


def test_forward_shapes_and_parity_with_encoder(tower, onnx_encoder):
    images = random_images(2)
    pixels = tower.get_image_transform()(images)
    assert pixels.shape == (2, 3, 96, 96) and pixels.dtype == torch.float32
    tokens = tower(pixels)
    assert tokens.shape == (2, 36, 192)
    np.testing.assert_allclose(tokens.numpy(), onnx_encoder.encode(images).patch_tokens, atol=1e-4)
    with_cls = VisionTower(tower.backbone, tower.contract, include_cls=True)
    out = with_cls(pixels)
    assert out.shape == (2, 37, 192) and with_cls.num_tokens == 37
    np.testing.assert_allclose(out[:, 0].numpy(), onnx_encoder.encode(images).cls, atol=1e-4)


def test_image_transform_accepts_pil_and_numpy(tower):
    from PIL import Image

    img = random_images(1, size=120)[0]
    t = tower.get_image_transform()
    a, b = t(img), t(Image.fromarray(img))
    assert a.shape == (3, 96, 96)
    torch.testing.assert_close(a, b)
    assert "mean" in repr(t)


def test_frozen_by_default(tower):
    assert all(not p.requires_grad for p in tower.backbone.parameters())
    tower.train()
    assert not tower.backbone.training  # a frozen backbone stays in eval when the policy trains
    pixels = torch.randn(1, 3, 96, 96)
    assert not tower(pixels).requires_grad


def test_projector_gets_gradients_backbone_does_not(artefacts):
    for kind in ("linear", "mlp"):
        tower = VisionTower.from_pretrained(artefacts["run"], proj_dim=64, projector=kind)
        assert tower.out_dim == 64 and tower.projector_dim == 64
        out = tower(torch.randn(2, 3, 96, 96))
        assert out.shape == (2, 36, 64)
        out.square().mean().backward()
        assert all(p.grad is not None for p in tower.projector.parameters())
        assert all(p.grad is None for p in tower.backbone.parameters())


def test_trainable_backbone(artefacts):
    tower = VisionTower.from_pretrained(artefacts["export"], trainable=True, include_cls=True)
    tower.train()
    assert tower.backbone.training
    tower(torch.randn(1, 3, 96, 96)).mean().backward()
    assert tower.backbone.patch_embed.proj.weight.grad is not None


def test_wrong_input_shape_is_a_clear_error(tower):
    with pytest.raises(ValueError, match=r"\(B, 3, 96, 96\)"):
        tower(torch.randn(1, 3, 224, 224))
    with pytest.raises(ValueError, match="projector must be one of"):
        VisionTower(tower.backbone, tower.contract, proj_dim=8, projector="qformer")
