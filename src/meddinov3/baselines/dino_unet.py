"""Dino U-Net (Gao et al., 2025) on this package's DINOv3 backbone.

Frozen DINOv3 ViT -> adapter (spatial prior + deformable extractors, `adapter.py`) -> four maps
at strides 4-32 -> fidelity-aware projections (`fapm.py`) to nnU-Net's decoder widths -> nnU-Net
style U-Net decoder. Only the adapter, projections, stem and decoder train.

Where this differs from a literal reading of the paper, and why:
- strides 1 and 2: the adapter's finest map is at 1/4, but a U-Net decoder needs skip maps at
  full and half resolution to draw boundaries; two nnU-Net encoder stages on the image (32 and
  64 channels) provide them;
- one output (no deep supervision): the decoder's scales do not follow nnU-Net's plans, so its
  deep-supervision targets would not match;
- any input size: the image is zero-padded to a multiple of 32 (the coarsest adapter stride),
  and to at least 64 so that the coarsest map has more than one pixel for its instance norm;
  the logits are cropped back.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from meddinov3.backbone import DinoVisionTransformer
from meddinov3.baselines.adapter import ADAPTER_STRIDES, DinoAdapter
from meddinov3.baselines.fapm import FidelityAwareProjection
from meddinov3.baselines.unet_decoder import NNUNET_WIDTHS, UNetDecoder, double_conv
from meddinov3.segmentation import PAPER_INTERACTION_LAYERS, adapt_input_channels

PAD_MULTIPLE = ADAPTER_STRIDES[-1]
# Instance norm needs more than one pixel, so the coarsest (1/32) map must be at least 2 x 2.
MIN_SIZE = 2 * PAD_MULTIPLE


def padded_size(size: int) -> int:
    return max(MIN_SIZE, size + (-size % PAD_MULTIPLE))


class DinoUNet(nn.Module):
    def __init__(
        self,
        backbone: DinoVisionTransformer,
        in_channels: int,
        num_classes: int,
        interaction_layers: Sequence[int] = PAPER_INTERACTION_LAYERS,
        widths: Sequence[int] = NNUNET_WIDTHS,
    ):
        super().__init__()
        bad = [i for i in interaction_layers if not 0 <= i < backbone.n_blocks]
        if bad:
            raise ValueError(f"interaction layers {bad} do not exist in a {backbone.n_blocks}-block backbone")
        if len(widths) != 2 + len(ADAPTER_STRIDES):
            raise ValueError(f"need {2 + len(ADAPTER_STRIDES)} decoder widths (strides 1 to 32), got {len(widths)}")
        self.dino_encoder = backbone
        backbone.requires_grad_(False)
        self.interaction_layers = list(interaction_layers)
        self.adapter = DinoAdapter(in_channels, backbone.embed_dim, backbone.num_heads, len(self.interaction_layers))
        self.stem_full = double_conv(in_channels, widths[0])
        self.stem_half = double_conv(widths[0], widths[1], stride=2)
        self.projections = nn.ModuleList(FidelityAwareProjection(backbone.embed_dim, w) for w in widths[2:])
        self.decoder = UNetDecoder(widths, num_classes)

    def train(self, mode: bool = True) -> "DinoUNet":
        """The frozen encoder always runs in eval mode, so its features do not change with drop-path."""
        super().train(mode)
        self.dino_encoder.eval()
        return self

    def vit_maps(self, x: Tensor) -> list[Tensor]:
        expected = self.dino_encoder.patch_embed.proj.in_channels
        if x.shape[1] == 1 and expected != 1:
            # A CT slice is one channel; the backbone was pretrained on three identical ones.
            x = x.expand(-1, expected, -1, -1)
        elif x.shape[1] != expected:
            raise ValueError(f"the network takes 1 or {expected} input channels, got {x.shape[1]}")
        with torch.no_grad():
            maps = self.dino_encoder.get_intermediate_layers(x, n=self.interaction_layers, reshape=True, norm=True)
        return list(maps)

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        x = F.pad(x, (0, padded_size(width) - width, 0, padded_size(height) - height))
        full = self.stem_full(x)
        half = self.stem_half(full)
        adapted = self.adapter(x, self.vit_maps(x))
        skips = [full, half, *(project(level) for project, level in zip(self.projections, adapted))]
        return self.decoder(skips)[..., :height, :width]


def build_dino_unet(
    backbone: DinoVisionTransformer,
    num_classes: int,
    in_channels: int = 1,
    interaction_layers: Sequence[int] | None = None,
) -> DinoUNet:
    """Dino U-Net around `backbone` (frozen), fed by the ends of the backbone's four quarters
    (blocks 2, 5, 8, 11 of a ViT-B) unless `interaction_layers` says otherwise. For several input
    channels the patch embedding is adapted as for MedDINOv3 (`adapt_input_channels`)."""
    from meddinov3.nnunet.spec import default_interaction_layers

    if in_channels != 1:
        adapt_input_channels(backbone, in_channels)
    layers = interaction_layers if interaction_layers is not None else default_interaction_layers(backbone.n_blocks)
    return DinoUNet(backbone, in_channels, num_classes, layers)
