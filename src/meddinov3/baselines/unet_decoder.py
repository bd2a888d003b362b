"""nnU-Net's 2D decoder pattern: per stage, a 2x transposed conv, concatenation with the skip map,
and two 3x3 conv -> instance norm -> LeakyReLU blocks; a 1x1 conv to the classes at the end."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from meddinov3.baselines.fapm import activation, norm

# nnU-Net's 2D widths: 32 at full resolution, doubling per level, capped at 512.
NNUNET_WIDTHS = (32, 64, 128, 256, 512, 512)


def conv_block(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1), norm(out_channels), activation())


def double_conv(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(conv_block(in_channels, out_channels, stride), conv_block(out_channels, out_channels))


class UNetDecoder(nn.Module):
    """Decodes skip maps given finest first (`widths[i]` channels at stride 2**i) from the coarsest up."""

    def __init__(self, widths: Sequence[int], num_classes: int):
        super().__init__()
        self.widths = list(widths)
        self.upsample = nn.ModuleList(
            nn.ConvTranspose2d(coarse, fine, kernel_size=2, stride=2) for fine, coarse in zip(widths[:-1], widths[1:])
        )
        self.stages = nn.ModuleList(double_conv(2 * fine, fine) for fine in widths[:-1])
        self.seg_layer = nn.Conv2d(widths[0], num_classes, kernel_size=1)

    def forward(self, skips: Sequence[Tensor]) -> Tensor:
        x = skips[-1]
        for level in range(len(skips) - 2, -1, -1):
            x = self.upsample[level](x)
            x = self.stages[level](torch.cat([x, skips[level]], dim=1))
        return self.seg_layer(x)
