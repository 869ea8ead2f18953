"""DINO's optimisation pieces: AdamW groups, per-parameter clipping, the frozen last layer."""

from __future__ import annotations

import torch
from torch import nn


def param_groups(model: nn.Module) -> list[dict]:
    """DINO's ``get_params_groups``: no weight decay on 1-D parameters (biases, norm scales);
    everything else is decayed, including the [CLS]/register tokens and the position
    embeddings, which are 3-D tensors (DINO decays them too)."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "apply_wd": True}, {"params": no_decay, "apply_wd": False, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, groups: list[dict] | None = None) -> torch.optim.Optimizer:
    """AdamW over ``groups`` (default: :func:`param_groups`); a group's ``lr_scale`` (layer-wise
    decay, ``train.adaptation``) multiplies the scheduled lr."""
    # lr and weight decay are set every step from the schedules.
    return torch.optim.AdamW(groups or param_groups(model), lr=0.0, weight_decay=0.0)


def set_hyperparameters(
    optimizer: torch.optim.Optimizer, lr: float, weight_decay: float, backbone_lr_factor: float = 1.0
) -> None:
    """``backbone_lr_factor`` scales the groups marked ``backbone`` (the adaptation's ramp)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0) * (backbone_lr_factor if group.get("backbone") else 1.0)
        if group.get("apply_wd"):
            group["weight_decay"] = weight_decay


@torch.no_grad()
def clip_gradients_per_parameter(model: nn.Module, clip: float) -> None:
    """DINO's ``clip_gradients``: each parameter's gradient norm capped at ``clip`` on its own."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if clip <= 0 or not grads:
        return
    norms = torch._foreach_norm(grads)
    scales = (clip / (torch.stack(norms) + 1e-6)).clamp(max=1.0).unbind()
    torch._foreach_mul_(grads, scales)


def cancel_last_layer_gradients(head: nn.Module) -> None:
    """The head's last layer is not updated during the first epoch(s) (DINO)."""
    for p in head.last_layer_parameters():
        p.grad = None
