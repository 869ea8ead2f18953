"""Frozen encoders for evaluation: a training checkpoint or an export folder, one interface.

``load_encoder(path)`` accepts
- a checkpoint file or run folder (``checkpoint.pt``): the TEACHER backbone is evaluated;
- an export folder (``encoder.safetensors`` + ``config.json`` whose ``"vidistill"`` key is the
  encoder contract), loaded the way a timm user would (``timm.create_model(..., pretrained=True,
  pretrained_cfg_overlay=dict(file=...))``), so the eval also checks that the artefact loads.

Preprocessing comes from the contract (mean/std, RGB, square resize), never re-typed here. The
probe resolution may differ from the training one: the backbone is built with
``dynamic_img_size`` and timm resamples the position embedding.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from vidistill.contract import EncoderContract
from vidistill.errors import CheckpointError, VidistillError

log = logging.getLogger(__name__)

EXPORT_WEIGHTS = "encoder.safetensors"
EXPORT_CONFIG = "config.json"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise VidistillError(f"--device {device}: CUDA is not available on this machine")
    try:
        return torch.device(device)
    except RuntimeError as e:
        raise VidistillError(f"--device {device!r}: {e}") from None


def is_export_folder(path: Path) -> bool:
    return path.is_dir() and (path / EXPORT_WEIGHTS).is_file()


def _load_export(folder: Path) -> tuple[nn.Module, EncoderContract]:
    import timm

    config_path = folder / EXPORT_CONFIG
    if not config_path.is_file():
        raise CheckpointError(f"{folder}: has {EXPORT_WEIGHTS} but no {EXPORT_CONFIG} (not a vidistill export)")
    try:
        config = json.loads(config_path.read_text())
        contract = EncoderContract.from_dict(config["vidistill"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(
            f"{config_path}: no valid encoder contract under the 'vidistill' key ({type(e).__name__}: {e})"
        ) from None
    weights = folder / EXPORT_WEIGHTS
    try:
        # num_classes=0 in the overlay too, so that timm keeps a strict load (it relaxes
        # strictness when the overlay's class count differs from the model's).
        model = timm.create_model(
            contract.model_name,
            pretrained=True,
            pretrained_cfg_overlay=dict(file=str(weights), num_classes=0),
            num_classes=0,
            img_size=contract.image_size,
            dynamic_img_size=True,
        )
    except Exception as e:  # unknown arch, truncated file, key/shape mismatch
        raise CheckpointError(
            f"{weights}: cannot be loaded as {contract.model_name}: {type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}"
        ) from None
    return model.eval(), contract


def load_backbone(path: str | Path, branch: str = "teacher") -> tuple[nn.Module, EncoderContract, Path]:
    """(backbone in eval mode with dynamic_img_size, contract, the file actually loaded).

    ``branch``: "teacher" (the encoder that ships) or "student" (checkpoints only; a diagnostic).
    """
    from vidistill.checkpoint import load_teacher_backbone

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint, run folder or export folder")
    if is_export_folder(path):
        if branch != "teacher":
            raise VidistillError(f"{path}: an export holds only the teacher; probe the run's checkpoint instead")
        model, contract = _load_export(path)
        return model, contract, path / EXPORT_WEIGHTS
    return load_teacher_backbone(path, branch)


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB; a clear error when it cannot be decoded."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise VidistillError(f"{path}: cannot be read as an image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def resize_square(img: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    """Resize to size x size (the contract's input layout); nearest for label/depth maps.

    Images: INTER_AREA when shrinking, INTER_LINEAR when enlarging, as the robot adapters do,
    so a probe scores the features a robot would get.
    """
    if img.shape[0] == size and img.shape[1] == size:
        return img
    if nearest:
        interp = cv2.INTER_NEAREST
    elif img.shape[0] >= size and img.shape[1] >= size:
        interp = cv2.INTER_AREA
    else:
        interp = cv2.INTER_LINEAR
    return cv2.resize(img, (size, size), interpolation=interp)


def _batched(items: Iterable, n: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class Encoder:
    """A frozen backbone plus the preprocessing of its contract, at a chosen input size."""

    model: nn.Module
    contract: EncoderContract
    source: Path
    image_size: int
    device: torch.device

    @property
    def patch_size(self) -> int:
        return self.contract.patch_size

    @property
    def grid_size(self) -> tuple[int, int]:
        side = self.image_size // self.patch_size
        return (side, side)

    @property
    def embed_dim(self) -> int:
        return self.contract.embed_dim

    def preprocess(self, images: list[np.ndarray]) -> torch.Tensor:
        """HxWx3 uint8 RGB images (any size) -> normalised NCHW float32 at image_size."""
        arr = np.stack([resize_square(img, self.image_size) for img in images])
        x = torch.from_numpy(arr).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.contract.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.contract.std, device=self.device).view(1, 3, 1, 1)
        return (x - mean) / std

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised pixels -> ([CLS] (B, D), last-layer patch tokens (B, P, D)), after the final norm."""
        tokens = self.model.forward_features(x)
        prefix = int(getattr(self.model, "num_prefix_tokens", self.contract.num_prefix_tokens))
        return tokens[:, 0], tokens[:, prefix:]

    def extract(
        self,
        images: Iterable[np.ndarray],
        batch_size: int = 32,
        total: int | None = None,
        desc: str = "features",
        dtype: torch.dtype = torch.float32,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features of many images, read lazily and run in batches; results on CPU.

        Returns ([CLS] (N, D), patch tokens (N, P, D)) in ``dtype`` (float16 halves the memory
        of a cached training set at no measurable cost to a linear probe).
        """
        from tqdm import tqdm

        cls_out: list[torch.Tensor] = []
        patch_out: list[torch.Tensor] = []
        with tqdm(total=total, desc=desc, unit="img", disable=None, leave=False) as bar:
            for batch in _batched(images, batch_size):
                cls, patches = self.forward(self.preprocess(batch))
                cls_out.append(cls.to("cpu", dtype))
                patch_out.append(patches.to("cpu", dtype))
                bar.update(len(batch))
        if not cls_out:
            raise VidistillError("no images to extract features from")
        return torch.cat(cls_out), torch.cat(patch_out)

    def patch_maps(self, patches: torch.Tensor) -> torch.Tensor:
        """(N, P, D) row-major patch tokens -> (N, D, h, w) feature maps."""
        h, w = self.grid_size
        n, p, d = patches.shape
        if p != h * w:
            raise VidistillError(f"{self.source}: got {p} patch tokens, expected {h}x{w} at {self.image_size} px")
        return patches.transpose(1, 2).reshape(n, d, h, w)


def load_encoder(
    path: str | Path, image_size: int | None = None, device: str = "auto", branch: str = "teacher"
) -> Encoder:
    """A frozen encoder from a checkpoint / run folder / export folder, ready to extract features.

    ``image_size``: the probe's input size (default: the contract's); a multiple of the patch.
    ``branch``: "student" probes a checkpoint's student backbone instead of its teacher.
    """
    model, contract, source = load_backbone(path, branch)
    size = int(image_size or contract.image_size)
    if size <= 0 or size % contract.patch_size:
        raise VidistillError(
            f"--image-size {size}: must be a positive multiple of the patch size {contract.patch_size}"
        )
    if size != contract.image_size and not getattr(model, "dynamic_img_size", False):
        raise VidistillError(
            f"{source}: backbone has a fixed input size {contract.image_size}; cannot probe at {size}"
        )
    for p in model.parameters():
        p.requires_grad_(False)
    dev = resolve_device(device)
    log.info(
        "encoder %s (%s, patch %d, dim %d) at %d px on %s",
        source, contract.model_name, contract.patch_size, contract.embed_dim, size, dev,
    )
    return Encoder(model.to(dev).eval(), contract, Path(source), size, dev)
