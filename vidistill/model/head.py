"""DINO projection head, shared by the [CLS] token and the patch tokens (Caron et al. 2021)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DINOHead(nn.Module):
    """MLP (in→hidden→hidden→bottleneck, GELU) → L2-normalise → weight-normed linear → out_dim.

    The last layer is ``g · v / ‖v‖`` without bias (weight normalisation written out, which is
    what ``nn.utils.weight_norm`` computes); with ``norm_last_layer`` the norm ``g`` is frozen
    at 1, DINO's choice for stable training. ``v`` keeps ``nn.Linear``'s default init, as in
    DINO and lightly (their ``_init_weights`` runs before the last layer exists): under weight
    norm the step on the direction ``v/‖v‖`` scales with 1/‖v‖, so trunc_normal(0.02) (0.55x
    the norm at bottleneck 256) would move the prototypes about twice as fast.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        num_layers: int = 3,
        norm_last_layer: bool = True,
    ):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (max(num_layers, 1) - 1) + [bottleneck_dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i < len(dims) - 2:
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        self.mlp.apply(self._init_weights)
        self.last_layer_v = nn.Parameter(nn.Linear(bottleneck_dim, out_dim, bias=False).weight.detach().clone())
        self.last_layer_g = nn.Parameter(torch.ones(out_dim, 1), requires_grad=not norm_last_layer)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def last_layer_parameters(self) -> list[nn.Parameter]:
        """Frozen during the first epoch(s): DINO's remedy against early instability."""
        return [self.last_layer_v, self.last_layer_g]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = F.normalize(self.mlp(x), dim=-1)
        w = self.last_layer_g * F.normalize(self.last_layer_v, dim=-1)
        return F.linear(z, w)
