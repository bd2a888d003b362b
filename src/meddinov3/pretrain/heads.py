"""The DINO / iBOT projection head: MLP -> L2-normalised bottleneck -> prototype scores."""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


def _hidden(in_dim: int, hidden_dim: int, batchnorm: bool) -> list[nn.Module]:
    # Batch statistics in the teacher too (no running averages): the point is to centre the
    # features of the batch at hand, which a frozen running mean would not do.
    norm = [nn.BatchNorm1d(hidden_dim, track_running_stats=False)] if batchnorm else []
    return [nn.Linear(in_dim, hidden_dim), *norm, nn.GELU()]


def _mlp(in_dim: int, hidden_dim: int, bottleneck_dim: int, n_layers: int, batchnorm: bool) -> nn.Sequential:
    if n_layers == 1:
        return nn.Sequential(nn.Linear(in_dim, bottleneck_dim))
    layers = _hidden(in_dim, hidden_dim, batchnorm)
    for _ in range(n_layers - 2):
        layers += _hidden(hidden_dim, hidden_dim, batchnorm)
    layers.append(nn.Linear(hidden_dim, bottleneck_dim))
    return nn.Sequential(*layers)


class DINOHead(nn.Module):
    """Keys `mlp.{0,2,4}.*` and `last_layer.weight`, as in the DINOv3 / MedDINOv3 checkpoints.

    The prototype layer is a plain bias-free linear map (DINOv3 dropped DINOv2's weight norm).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 65536,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        nlayers: int = 3,
        init: str = "dinov3",
        batchnorm: bool = False,
    ) -> None:
        super().__init__()
        if nlayers < 1:
            raise ValueError(f"DINOHead needs at least one layer, got nlayers={nlayers}")
        self.mlp = _mlp(in_dim, hidden_dim, bottleneck_dim, nlayers, batchnorm)
        self.last_layer = nn.Linear(bottleneck_dim, out_dim, bias=False)
        self.reset_parameters(init)

    def reset_parameters(self, init: str = "dinov3") -> None:
        """"dinov3": truncated normal, std 0.02 (DINOv3's heads). "fan_in": std 1 / sqrt(fan-in),
        which keeps the input's variations alive through a narrow MLP: with std 0.02 and widths
        of 64 they shrink ~10x per layer, so zero-initialised biases outgrow them after a few
        optimiser steps and the head's output no longer depends on its input."""
        if init not in ("dinov3", "fan_in"):
            raise ValueError(f"head init must be 'dinov3' or 'fan_in', got {init!r}")
        for module in self.modules():
            if isinstance(module, nn.Linear):
                std = 0.02 if init == "dinov3" else module.in_features**-0.5
                nn.init.trunc_normal_(module.weight, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mlp(x)
        # A smaller eps under fp16 keeps the normalisation from dividing by a denormal.
        eps = 1e-6 if x.dtype == torch.float16 else 1e-12
        x = F.normalize(x, dim=-1, p=2, eps=eps)
        return self.last_layer(x)
