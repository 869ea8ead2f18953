"""The encoder's input/output contract: one object that travels from the training config into
every artefact (checkpoint, safetensors config, ONNX metadata, TensorRT manifest).

Robot users most often get a *normalisation mismatch* wrong, so nobody re-types these numbers:
the adapters read them from the artefact. This module is pure Python (no torch) so that a robot
which only runs ONNX/TensorRT can import it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

CONTRACT_VERSION = 1


@dataclass(frozen=True)
class EncoderContract:
    """What an exported encoder expects and returns.

    Input: RGB images resized to ``image_size``×``image_size``, scaled to [0, 1], then
    ``(x - mean) / std``, laid out NCHW float32. Output: ``cls`` (B, D) and ``patch_tokens``
    (B, P, D) with ``P = grid_size[0] * grid_size[1]`` in row-major order.
    """

    model_name: str
    image_size: int
    patch_size: int
    embed_dim: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    num_prefix_tokens: int = 1
    # timm create_model kwargs beyond the name (register tokens, custom widths): with
    # ``model_name`` they rebuild exactly this architecture.
    model_args: dict = field(default_factory=dict, hash=False, compare=True)
    channel_order: str = "RGB"
    layout: str = "NCHW"
    input_name: str = "pixels"
    output_names: tuple[str, ...] = ("cls", "patch_tokens")
    version: int = field(default=CONTRACT_VERSION)

    @property
    def grid_size(self) -> tuple[int, int]:
        side = self.image_size // self.patch_size
        return (side, side)

    @property
    def num_patches(self) -> int:
        h, w = self.grid_size
        return h * w

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        d["output_names"] = list(self.output_names)
        d["grid_size"] = list(self.grid_size)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> EncoderContract:
        known = {f for f in cls.__dataclass_fields__}
        missing = {"model_name", "image_size", "patch_size", "embed_dim"} - set(d)
        if missing:
            raise ValueError(f"encoder contract is missing {sorted(missing)}")
        kw = {k: v for k, v in d.items() if k in known}
        for key in ("mean", "std", "output_names"):
            if key in kw:
                kw[key] = tuple(kw[key])
        return cls(**kw)

    @classmethod
    def from_json(cls, s: str) -> EncoderContract:
        return cls.from_dict(json.loads(s))
