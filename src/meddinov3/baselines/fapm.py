"""Dino U-Net's fidelity-aware projection module (FAPM) and learnable upsampling, as the release builds them.

From the facts sheet (RECIPES.md 3.3, `T/dinoUNetTrainer.py:192-246, 337-493`), for each adapter
map f_i (ViT width, stride 4 * 2**i) and decoder width oc_i, with rank r = 256:
  z_s = shared 1x1 conv (one for all scales) of f_i, z_p = per-scale 1x1 conv of f_i,
  [gamma, beta] = per-scale 1x1 conv r -> 2r of z_s, z = gamma * z_p + beta (FiLM),
  out = refine(z) + shortcut(z), no activation after the sum;
refine = 1x1 conv r -> oc, norm, act, depthwise 3x3, pointwise 1x1, norm, act, 1x1 conv,
squeeze-excitation; shortcut = 1x1 conv r -> oc (identity when oc = r).
Each projected map is then brought to stride 2**i by one ConvTranspose2d(oc, oc, 2, 2) applied
twice with the same weights (bilinear resize only if the size is still off).
Norm, activation and conv bias are nnU-Net's default 2D plans' (instance norm with affine, eps 1e-5;
LeakyReLU 0.01; bias on).
"""

from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

FAPM_RANK = 256  # T/dinoUNetTrainer.py:431


def norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, eps=1e-5, affine=True)


def activation() -> nn.Module:
    return nn.LeakyReLU(0.01, inplace=True)


class SqueezeExcitation(nn.Module):
    """Global average -> 1x1 to max(1, C/16) -> ReLU -> 1x1 back -> sigmoid gate on the channels."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.expand = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        gate = self.expand(F.relu(self.reduce(x.mean(dim=(2, 3), keepdim=True))))
        return x * gate.sigmoid()


class ScaleProjection(nn.Module):
    """The per-scale part of the FAPM: specific basis, FiLM from the shared basis, refine + shortcut."""

    def __init__(self, in_channels: int, out_channels: int, rank: int = FAPM_RANK):
        super().__init__()
        self.specific = nn.Conv2d(in_channels, rank, 1)
        self.film = nn.Conv2d(rank, 2 * rank, 1)
        self.refine = nn.Sequential(
            nn.Conv2d(rank, out_channels, 1),
            norm(out_channels),
            activation(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, groups=out_channels),
            nn.Conv2d(out_channels, out_channels, 1),
            norm(out_channels),
            activation(),
            nn.Conv2d(out_channels, out_channels, 1),
            SqueezeExcitation(out_channels),
        )
        self.shortcut = nn.Identity() if out_channels == rank else nn.Conv2d(rank, out_channels, 1)

    def forward(self, x: Tensor, shared: Tensor) -> Tensor:
        gamma, beta = self.film(shared).chunk(2, dim=1)
        z = gamma * self.specific(x) + beta
        return self.refine(z) + self.shortcut(z)


class FidelityAwareProjection(nn.Module):
    """Adapter maps (ViT width) -> decoder widths, one scale each, with a basis shared by all scales."""

    def __init__(self, in_channels: int, out_channels: Sequence[int], rank: int = FAPM_RANK):
        super().__init__()
        self.shared = nn.Conv2d(in_channels, rank, 1)
        self.scales = nn.ModuleList(ScaleProjection(in_channels, oc, rank) for oc in out_channels)

    def forward(self, maps: Sequence[Tensor]) -> list[Tensor]:
        return [scale(x, self.shared(x)) for scale, x in zip(self.scales, maps)]


class RepeatedUpsampler(nn.Module):
    """One ConvTranspose2d(k2, s2) applied twice (x4), then bilinear to the target size if still off."""

    def __init__(self, channels: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2)

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        x = self.up(self.up(x))
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x
