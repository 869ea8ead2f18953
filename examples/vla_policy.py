"""A VLA-style policy on top of the encoder's patch tokens: VisionTower + projector + action head.

    python examples/vla_policy.py                  # a random-init encoder made on the fly
    python examples/vla_policy.py runs/my_run      # a run folder, an export folder or a checkpoint

The frozen ``VisionTower`` gives (B, P, D) patch tokens (what prismatic/OpenVLA, LeRobot and
pi0-style policies consume); its projector maps them to the "language model" width and is the
part that trains (swapping the encoder under a trained VLA needs the projector retrained). Here
a learned action query cross-attends to the projected tokens plus an instruction embedding and
regresses a 7-DoF action; a few optimiser steps show the gradients flow into the projector and
head only.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vidistill.robot_adapters import VisionTower

LLM_WIDTH = 256  # the language model's hidden size the projector maps to
ACTION_DIM = 7  # xyz, rotation, gripper


class ToyVLAPolicy(nn.Module):
    """Image tokens + instruction tokens -> one action, through a learned action query."""

    def __init__(self, tower: VisionTower, vocab: int = 100):
        super().__init__()
        self.tower = tower
        width = tower.out_dim
        self.instruction = nn.Embedding(vocab, width)
        self.pos = nn.Parameter(torch.zeros(1, tower.num_tokens, width))
        self.query = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.attend = nn.MultiheadAttention(width, num_heads=4, batch_first=True)
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU(), nn.Linear(width, ACTION_DIM))

    def forward(self, pixel_values: torch.Tensor, instruction_ids: torch.Tensor) -> torch.Tensor:
        image_tokens = self.tower(pixel_values) + self.pos  # (B, P, LLM_WIDTH), projected
        context = torch.cat([image_tokens, self.instruction(instruction_ids)], dim=1)
        query = self.query.expand(len(pixel_values), -1, -1)
        pooled, _ = self.attend(query, context, context)
        return self.head(pooled[:, 0])


def demo_checkpoint(workdir: Path) -> Path:
    from vidistill.config import build_config
    from vidistill.train.checkpoint import write_random_init_checkpoint

    return write_random_init_checkpoint(build_config("cpu-tiny"), workdir / "run").parent


def main(path: Path) -> None:
    torch.manual_seed(0)
    tower = VisionTower.from_pretrained(path, proj_dim=LLM_WIDTH, projector="mlp")
    print(f"VisionTower({tower.extra_repr()})")
    print(f"default_image_resolution={tower.default_image_resolution} num_patches={tower.num_patches} "
          f"embed_dim={tower.embed_dim} -> projected to {tower.out_dim}")
    policy = ToyVLAPolicy(tower)
    trainable = [n for n, p in policy.named_parameters() if p.requires_grad]
    assert not any(n.startswith("tower.backbone") for n in trainable)
    print(f"trainable tensors: {len(trainable)} (projector + head); backbone frozen")

    # Camera frames (uint8 HWC, any size) -> the tower's own transform (contract size, mean/std).
    transform = tower.get_image_transform()
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (8, 120, 160, 3), dtype=np.uint8)
    pixel_values = transform(frames)  # (8, 3, S, S) normalised
    instructions = torch.randint(0, 100, (8, 6))
    target = torch.randn(8, ACTION_DIM)

    optimiser = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-3)
    policy.train()  # the frozen backbone stays in eval mode
    for step in range(5):
        action = policy(pixel_values, instructions)
        loss = nn.functional.mse_loss(action, target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        print(f"step {step}: action {tuple(action.shape)} loss {loss.item():.4f}")
    assert all(p.grad is None for p in tower.backbone.parameters())
    assert all(p.grad is not None for p in tower.projector.parameters())
    print("gradients reach the projector and head, not the frozen backbone")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, help="run folder, export folder (safetensors) or checkpoint .pt")
    args = parser.parse_args()
    if args.path is not None:
        main(args.path)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(demo_checkpoint(Path(tmp)))
