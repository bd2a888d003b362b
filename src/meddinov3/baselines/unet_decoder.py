"""nnU-Net's 2D decoder pattern: per stage, a 2x transposed conv, concatenation with the skip map,
and n conv 3x3 -> instance norm -> LeakyReLU blocks; a 1x1 conv to the classes at the end."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from meddinov3.baselines.fapm import activation, norm

# nnU-Net's default 2D plans: 32 features at full resolution, doubling per stage.
NNUNET_WIDTHS = (32, 64, 128, 256)


def conv_stack(in_channels: int, out_channels: int, n: int) -> nn.Sequential:
    layers = []
    for i in range(n):
        layers += [nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, padding=1), norm(out_channels),
                   activation()]
    return nn.Sequential(*layers)


class UNetDecoder(nn.Module):
    """Decodes skip maps given finest first (`widths[i]` channels at stride 2**i) from the coarsest up."""

    def __init__(self, widths: Sequence[int], num_classes: int, convs_per_stage: int = 2):
        super().__init__()
        self.upsample = nn.ModuleList(
            nn.ConvTranspose2d(coarse, fine, kernel_size=2, stride=2) for fine, coarse in zip(widths[:-1], widths[1:])
        )
        self.stages = nn.ModuleList(conv_stack(2 * fine, fine, convs_per_stage) for fine in widths[:-1])
        self.seg_layer = nn.Conv2d(widths[0], num_classes, kernel_size=1)

    def forward(self, skips: Sequence[Tensor]) -> Tensor:
        x = skips[-1]
        for level in range(len(skips) - 2, -1, -1):
            x = self.upsample[level](x)
            x = self.stages[level](torch.cat([x, skips[level]], dim=1))
        return self.seg_layer(x)
