"""The adaptation benchmark's base encoder: a ViT trained SUPERVISED on scene A's labels.

No pretrained weights can be downloaded here, and self-supervised training at CPU scale does not
beat random init (issue 12), so the stand-in for "the encoder a team already trusts" is a timm
ViT trained on the renderer's own labels of scene A's training video (``render.py
--labelled-every N`` writes them to ``labelled/``; the held-out probe stills are never used):

- per patch token, a 1x1 linear head to the 6 classes, logits upsampled bilinearly to the label
  map, cross-entropy (the same head shape as the Fast-LP probe), plus a 1x1 log-depth head
  (squared error of log-depth on valid pixels, weight ``depth_weight``);
- augmentation: random resized crops (area 25-100%, so objects appear at up to twice the scale of
  a full frame, as at the 2x probe size), horizontal flips, brightness/contrast/saturation jitter;
- AdamW, linear warm-up then cosine, a fixed number of steps.

The heads are dropped; the backbone is saved in timm's hub layout (``timm.models._hub.save_for_hf``:
``config.json`` + ``model.safetensors``), which ``vidistill train --init FOLDER`` reads.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger("adapt.base")

NUM_CLASSES = 6  # render.py: 1 background .. 6 objects (0 = ignore, unused)


@dataclass
class BaseSettings:
    arch: str = "vit_tiny_patch16_224"
    image_size: int = 96
    steps: int = 200
    batch: int = 16
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup: int = 20
    depth_weight: float = 0.5
    crop_area: tuple[float, float] = (0.25, 1.0)
    jitter: float = 0.25  # brightness/contrast/saturation: factor in [1 - j, 1 + j]
    seed: int = 0


def load_labelled(root: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All stills of ``root/{images,annotations,depth}/training`` as (N,3,H,W) uint8, (N,H,W) int64
    targets 0..C-1 (-1 ignore) and (N,H,W) float metres (0 invalid)."""
    from vidistill.eval.datasets import dense_split, read_depth_map, read_label_map
    from vidistill.eval.features import read_rgb

    seg = dense_split(root, "training")
    depth = dense_split(root, "training", "depth")
    images = torch.from_numpy(np.stack([read_rgb(p) for p in seg.images])).permute(0, 3, 1, 2).contiguous()
    labels = torch.from_numpy(np.stack([read_label_map(p).astype(np.int64) for p in seg.targets])) - 1
    labels[(labels < 0) | (labels >= NUM_CLASSES)] = -1
    depths = torch.from_numpy(np.stack([read_depth_map(p) for p in depth.targets]))
    return images, labels, depths


def _crop_grids(n: int, size: int, area: tuple[float, float], gen: torch.Generator) -> torch.Tensor:
    """Sampling grids (n, size, size, 2) of random square-ish crops with random horizontal flips."""
    a = torch.empty(n).uniform_(*area, generator=gen)
    ratio = torch.exp(torch.empty(n).uniform_(math.log(3 / 4), math.log(4 / 3), generator=gen))
    w = torch.sqrt(a * ratio).clamp(max=1.0)
    h = torch.sqrt(a / ratio).clamp(max=1.0)
    cx = (torch.rand(n, generator=gen) * 2 - 1) * (1 - w)
    cy = (torch.rand(n, generator=gen) * 2 - 1) * (1 - h)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = w * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    return F.affine_grid(theta, (n, 1, size, size), align_corners=False)


def _jitter(x: torch.Tensor, j: float, gen: torch.Generator) -> torch.Tensor:
    """Brightness, contrast and saturation jitter of (B,3,H,W) pixels in [0, 1]."""
    n = x.shape[0]
    factor = lambda: torch.empty(n, 1, 1, 1).uniform_(1 - j, 1 + j, generator=gen)  # noqa: E731
    x = x * factor()
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * factor() + mean
    grey = x.mean(dim=1, keepdim=True)
    x = (x - grey) * factor() + grey
    return x.clamp(0, 1)


class DenseHeads(nn.Module):
    """1x1 segmentation and log-depth heads on (B, D, h, w) patch-token maps."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.seg = nn.Conv2d(dim, num_classes, 1)
        self.depth = nn.Conv2d(dim, 1, 1)

    def forward(self, maps: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        up = lambda t: F.interpolate(t, size=size, mode="bilinear", align_corners=False)  # noqa: E731
        return up(self.seg(maps)), up(self.depth(maps))[:, 0]


def build_model(settings: BaseSettings) -> nn.Module:
    import timm

    return timm.create_model(settings.arch, pretrained=False, num_classes=0, img_size=settings.image_size)


def train_base(labelled: Path, output: Path, settings: BaseSettings, mean, std) -> dict:
    """Train the backbone on the labelled stills, save it in timm's hub layout into ``output``.

    Returns a record (settings, loss curve summary, seconds) also written to ``output/train.json``.
    """
    from timm.models._hub import save_for_hf
    from tqdm import tqdm

    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    images, labels, depths = load_labelled(labelled)
    if len(images) == 0:
        raise ValueError(f"{labelled}: no labelled stills")
    model = build_model(settings)
    heads = DenseHeads(model.embed_dim, NUM_CLASSES)
    with torch.no_grad():
        valid = depths > 0
        heads.depth.bias.fill_(float(depths[valid].log().mean()))
    params = list(model.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    mean_t = torch.tensor(mean).view(1, 3, 1, 1)
    std_t = torch.tensor(std).view(1, 3, 1, 1)
    size = settings.image_size
    grid_side = size // model.patch_embed.patch_size[0]
    losses: list[dict] = []
    t0 = time.perf_counter()
    model.train()
    for step in tqdm(range(settings.steps), desc="base (supervised)", disable=None):
        idx = torch.randint(len(images), (settings.batch,), generator=gen)
        grid = _crop_grids(settings.batch, size, settings.crop_area, gen)
        x = F.grid_sample(images[idx].float() / 255, grid, mode="bilinear", align_corners=False)
        x = (_jitter(x, settings.jitter, gen) - mean_t) / std_t
        y = F.grid_sample(labels[idx, None].float(), grid, mode="nearest", align_corners=False)[:, 0].long()
        d = F.grid_sample(depths[idx, None], grid, mode="nearest", align_corners=False)[:, 0]
        tokens = model.forward_features(x)[:, model.num_prefix_tokens :]
        maps = tokens.transpose(1, 2).reshape(len(x), -1, grid_side, grid_side)
        logits, log_depth = heads(maps, (size, size))
        seg_loss = F.cross_entropy(logits, y, ignore_index=-1)
        ok = d > 0
        depth_loss = ((log_depth[ok] - d[ok].log()) ** 2).mean() if ok.any() else log_depth.sum() * 0
        loss = seg_loss + settings.depth_weight * depth_loss
        lr = settings.lr * min(1.0, (step + 1) / settings.warmup) * (
            0.5 * (1 + math.cos(math.pi * max(0, step - settings.warmup) / max(1, settings.steps - settings.warmup)))
        )
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 3.0)
        opt.step()
        losses.append({"step": step + 1, "seg": float(seg_loss.detach()), "depth": float(depth_loss.detach()), "lr": lr})
        if (step + 1) % 50 == 0:
            log.info("base step %d/%d: seg loss %.3f, depth loss %.3f (%.0f s)", step + 1, settings.steps,
                     losses[-1]["seg"], losses[-1]["depth"], time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    model.eval()
    output.mkdir(parents=True, exist_ok=True)
    data_config = {"input_size": (3, size, size), "mean": tuple(mean), "std": tuple(std),
                   "interpolation": "bilinear", "crop_pct": 1.0}
    save_for_hf(model, str(output), safe_serialization=True, data_config=data_config)
    # save_for_hf copies the architecture's default pretrained tag (an ImageNet one): say what this is.
    config_path = output / "config.json"
    config = json.loads(config_path.read_text())
    config["pretrained_cfg"]["tag"] = "vidistill-sim-scene-a-supervised"
    config["pretrained_cfg"].pop("license", None)
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    tail = losses[-max(1, len(losses) // 10) :]
    record = {
        "settings": asdict(settings),
        "labelled_stills": len(images),
        "seconds": seconds,
        "final_seg_loss": sum(r["seg"] for r in tail) / len(tail),
        "final_depth_loss": sum(r["depth"] for r in tail) / len(tail),
        "first_seg_loss": losses[0]["seg"],
        "curve": losses[:: max(1, len(losses) // 50)],
    }
    (output / "train.json").write_text(json.dumps(record, indent=2) + "\n")
    return record
