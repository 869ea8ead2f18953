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

CONTRACT_VERSION = 2  # 2: image_size is (H, W); resize rule recorded
# How a camera frame of another shape becomes the encoder's (H, W) input. "crop": the largest
# centred box of the input's aspect, then resized (training saw undistorted crops); "letterbox":
# the whole frame resized to fit, the rest filled with the mean colour (0 after normalisation);
# "stretch": resized to (H, W), aspect not kept.
RESIZE_MODES = ("crop", "letterbox", "stretch")
# Training resizes with torchvision's antialiased bicubic (PIL's kernel); serving does the same.
INTERPOLATIONS = ("bicubic", "bilinear")


def as_hw(size: int | tuple[int, int] | list[int] | str) -> tuple[int, int]:
    """``224`` / ``(224, 288)`` / ``"224x288"`` (H x W) -> ``(H, W)``."""
    if isinstance(size, str):
        parts = size.lower().replace(",", "x").split("x")
        if len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"image size {size!r}: expected S or HxW, e.g. 224 or 224x288")
        size = tuple(int(p) for p in parts)
    if isinstance(size, int):
        return (int(size), int(size))
    h, w = (int(size[0]), int(size[-1])) if len(size) in (1, 2) else (None, None)
    if h is None:
        raise ValueError(f"image size {size!r}: expected S or (H, W)")
    return (h, w)


@dataclass(frozen=True)
class EncoderContract:
    """What an exported encoder expects and returns.

    Input: RGB images brought to ``image_size`` = (H, W) by ``resize`` (crop / letterbox /
    stretch) with ``interpolation``, scaled to [0, 1], then ``(x - mean) / std``, laid out NCHW
    float32. Output: ``cls`` (B, D) and ``patch_tokens`` (B, P, D) with
    ``P = grid_size[0] * grid_size[1]`` in row-major order. Older contracts with an int
    ``image_size`` read as a square.
    """

    model_name: str
    image_size: tuple[int, int]
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
    resize: str = "crop"
    interpolation: str = "bicubic"
    version: int = field(default=CONTRACT_VERSION)

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", as_hw(self.image_size))
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"contract resize {self.resize!r}: expected one of {RESIZE_MODES}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"contract interpolation {self.interpolation!r}: expected one of {INTERPOLATIONS}")

    @property
    def height(self) -> int:
        return self.image_size[0]

    @property
    def width(self) -> int:
        return self.image_size[1]

    @property
    def grid_size(self) -> tuple[int, int]:
        return (self.height // self.patch_size, self.width // self.patch_size)

    @property
    def num_patches(self) -> int:
        h, w = self.grid_size
        return h * w

    def to_dict(self) -> dict:
        d = asdict(self)
        d["image_size"] = list(self.image_size)
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
