"""Behaviour cloning on frozen encoder features (CortexBench's Meta-World protocol, scaled down).

The policy is an MLP with 3 hidden layers of 256 on [features(t-2), features(t-1), features(t),
proprioception(t)] (a 3-frame history; the first frames of an episode repeat frame 0), trained
with MSE on the expert's actions; inputs are standardised with the training set's statistics.
Features are the encoder's [CLS] token, computed once per demo frame (cached) for training and
live, through ``FeatureObservationWrapper`` over the real env, in rollouts.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

HISTORY = 3
HIDDEN = (256, 256, 256)


@dataclass
class BCSettings:
    steps: int = 2000
    batch: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4


def history_inputs(features: np.ndarray, states: np.ndarray, episodes: np.ndarray) -> np.ndarray:
    """Per frame: its own and the 2 previous frames' features (within its episode) + its state."""
    rows = []
    for e in np.unique(episodes):
        idx = np.flatnonzero(episodes == e)
        f = features[idx]
        stacked = [f[np.maximum(np.arange(len(idx)) - lag, 0)] for lag in range(HISTORY - 1, -1, -1)]
        rows.append(np.concatenate([*stacked, states[idx]], axis=1))
    return np.concatenate(rows).astype(np.float32)


def build_mlp(in_dim: int, out_dim: int):
    import torch.nn as nn

    layers, d = [], in_dim
    for h in HIDDEN:
        layers += [nn.Linear(d, h), nn.ReLU()]
        d = h
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


class BCPolicy:
    """The trained MLP with its input standardisation; ``act`` takes one step's observation."""

    def __init__(self, model, mean: np.ndarray, std: np.ndarray) -> None:
        self.model, self.mean, self.std = model.eval(), mean, std
        self._history: deque = deque(maxlen=HISTORY)

    def reset(self) -> None:
        self._history.clear()

    def act(self, features: np.ndarray, state: np.ndarray) -> np.ndarray:
        import torch

        features = np.asarray(features, np.float32).reshape(-1)
        if not self._history:
            self._history.extend([features] * HISTORY)
        else:
            self._history.append(features)
        x = np.concatenate([*self._history, np.asarray(state, np.float32)])
        x = (x - self.mean) / self.std
        with torch.no_grad():
            a = self.model(torch.from_numpy(x[None].astype(np.float32)))[0].numpy()
        return np.clip(a, -1.0, 1.0)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "mean": self.mean, "std": self.std}

    @classmethod
    def from_state(cls, state: dict) -> BCPolicy:
        model = build_mlp(len(state["mean"]), state["model"][f"{2 * len(HIDDEN)}.weight"].shape[0])
        model.load_state_dict(state["model"])
        return cls(model, state["mean"], state["std"])


def train_bc(inputs: np.ndarray, actions: np.ndarray, settings: BCSettings, seed: int) -> tuple[BCPolicy, dict]:
    import torch

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    mean = inputs.mean(0)
    std = inputs.std(0) + 1e-6
    x = torch.from_numpy(((inputs - mean) / std).astype(np.float32))
    y = torch.from_numpy(actions.astype(np.float32))
    model = build_mlp(x.shape[1], y.shape[1])
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, settings.steps)
    losses = []
    for _ in range(settings.steps):
        idx = torch.randint(0, len(x), (min(settings.batch, len(x)),), generator=g)
        loss = torch.nn.functional.mse_loss(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    tail = losses[-max(1, len(losses) // 10):]
    return BCPolicy(model, mean, std), {"first_loss": losses[0], "final_loss": float(np.mean(tail))}
