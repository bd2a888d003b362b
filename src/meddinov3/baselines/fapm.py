"""Fidelity-aware projection module (FAPM): ViT-width adapter maps -> the U-Net decoder's widths.

Dino U-Net's paper describes the FAPM as a projection that keeps the dense features' detail
while reducing their dimension, through a decomposition into a detail and a global-context
branch, FiLM-style modulation, and a depthwise refinement. This is our implementation of that
description (the published code of the module was not available to us):
- detail branch: 1x1 conv to the output width, instance norm, LeakyReLU (per-position features);
- context branch: a low-rank 1x1 conv, averaged over the image, predicts a per-channel scale and
  shift for the detail branch (zero-initialised: the module starts as the plain projection);
- refinement: depthwise 3x3 conv, norm, activation, pointwise conv, norm, added residually.
Norms and activations are nnU-Net's (instance norm with affine, LeakyReLU 0.01).
"""

from __future__ import annotations

from torch import Tensor, nn


def norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, eps=1e-5, affine=True)


def activation() -> nn.Module:
    return nn.LeakyReLU(0.01, inplace=True)


class FidelityAwareProjection(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, context_rank: int | None = None):
        super().__init__()
        rank = context_rank or max(8, out_channels // 4)
        self.detail = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), norm(out_channels), activation())
        self.context = nn.Conv2d(in_channels, rank, 1)
        self.film = nn.Linear(rank, 2 * out_channels)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        self.refine = nn.Sequential(
            nn.Conv2d(out_channels, out_channels, 3, padding=1, groups=out_channels, bias=False),
            norm(out_channels),
            activation(),
            nn.Conv2d(out_channels, out_channels, 1, bias=False),
            norm(out_channels),
        )
        self.out_activation = activation()

    def forward(self, x: Tensor) -> Tensor:
        detail = self.detail(x)
        scale, shift = self.film(self.context(x).mean(dim=(2, 3))).chunk(2, dim=-1)
        modulated = detail * (1 + scale[..., None, None]) + shift[..., None, None]
        return self.out_activation(modulated + self.refine(modulated))
