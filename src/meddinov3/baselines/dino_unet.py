"""Dino U-Net (Gao et al., 2025) as the MedDINOv3 release trains it, on this package's DINOv3 backbone.

Frozen DINOv3 ViT (blocks 2, 5, 8, 11, normed, run in bfloat16 without gradients) -> adapter
(`adapter.py`: spatial prior + six deformable extractors) -> four maps at strides 4-32 -> FAPM
(`fapm.py`) to the first four nnU-Net decoder widths, each upsampled x4 by a repeated transposed
conv to strides 1-8 -> three-stage U-Net decoder (`unet_decoder.py`) -> logits at full resolution.
Facts sheet: RECIPES.md section 3.

- Input: one channel is tiled to three, two are tiled and cut to three, more keep the first three
  (`T/dinoUNetTrainer.py:472-479`); the spatial prior and the ViT both see those three.
- The frozen ViT follows the network's train/eval mode, as in the release; with the recipe's
  backbone (no drop path, no RoPE augmentation) the two modes compute the same features.
- Initialisation (`reset_parameters`): He-normal (a = 1e-2), zero biases, on every Conv and
  ConvTranspose except the frozen ViT's; the release's call also re-randomises the ViT's patch
  embedding (`reinit_encoder_convs`, used by its recipe after the pretrained weights are loaded).
- Any input size: zero-padded to a multiple of 32 (the coarsest stride), and to at least 64 so
  that the coarsest map has more than one pixel for instance norm; logits are cropped back.
  nnU-Net's 2D patch sizes need no padding.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from meddinov3.backbone import DinoVisionTransformer
from meddinov3.baselines.adapter import ADAPTER_STRIDES, DinoAdapter
from meddinov3.baselines.fapm import FidelityAwareProjection, RepeatedUpsampler
from meddinov3.baselines.unet_decoder import NNUNET_WIDTHS, UNetDecoder
from meddinov3.segmentation import PAPER_INTERACTION_LAYERS, default_interaction_layers
from meddinov3.segmentation.decoder import HE_INIT

PAD_MULTIPLE = ADAPTER_STRIDES[-1]
# Instance norm needs more than one pixel, so the coarsest (1/32) map must be at least 2 x 2.
MIN_SIZE = 2 * PAD_MULTIPLE
IMAGE_CHANNELS = 3


def padded_size(size: int) -> int:
    return max(MIN_SIZE, size + (-size % PAD_MULTIPLE))


def three_channels(x: Tensor) -> Tensor:
    """Tile the channels and keep the first three."""
    repeats = -(-IMAGE_CHANNELS // x.shape[1])
    return x.repeat(1, repeats, 1, 1)[:, :IMAGE_CHANNELS]


class DinoUNet(nn.Module):
    def __init__(
        self,
        backbone: DinoVisionTransformer,
        num_classes: int,
        interaction_layers: Sequence[int] = PAPER_INTERACTION_LAYERS,
        widths: Sequence[int] = NNUNET_WIDTHS,
        convs_per_stage: int = 2,
    ):
        super().__init__()
        bad = [i for i in interaction_layers if not 0 <= i < backbone.n_blocks]
        if bad:
            raise ValueError(f"interaction layers {bad} do not exist in a {backbone.n_blocks}-block backbone")
        if len(interaction_layers) != len(ADAPTER_STRIDES) or len(widths) != len(ADAPTER_STRIDES):
            raise ValueError(
                f"Dino U-Net fuses {len(ADAPTER_STRIDES)} ViT blocks into {len(ADAPTER_STRIDES)} decoder widths, got "
                f"{len(interaction_layers)} blocks and widths {list(widths)}"
            )
        if backbone.patch_embed.proj.in_channels != IMAGE_CHANNELS:
            raise ValueError(f"Dino U-Net's ViT takes {IMAGE_CHANNELS} channels")
        self.dino_encoder = backbone.requires_grad_(False)
        self.interaction_layers = list(interaction_layers)
        self.adapter = DinoAdapter(IMAGE_CHANNELS, backbone.embed_dim)
        self.projection = FidelityAwareProjection(backbone.embed_dim, widths)
        self.upsamplers = nn.ModuleList(RepeatedUpsampler(w) for w in widths)
        self.decoder = UNetDecoder(widths, num_classes, convs_per_stage)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for name, child in self.named_children():
            if name != "dino_encoder":
                child.apply(HE_INIT)

    def reinit_encoder_convs(self) -> None:
        """The release's slip: its He initialisation also reaches the frozen ViT's patch embedding."""
        self.dino_encoder.apply(HE_INIT)

    def vit_maps(self, x: Tensor) -> list[Tensor]:
        with torch.no_grad(), torch.autocast(x.device.type, dtype=torch.bfloat16):
            maps = self.dino_encoder.get_intermediate_layers(x, n=self.interaction_layers, reshape=True, norm=True)
        return [m.float() for m in maps]

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        x = three_channels(F.pad(x, (0, padded_size(width) - width, 0, padded_size(height) - height)))
        adapted = self.adapter(x, self.vit_maps(x))
        skips = [
            up(level, (x.shape[-2] // 2**i, x.shape[-1] // 2**i))
            for i, (up, level) in enumerate(zip(self.upsamplers, self.projection(adapted)))
        ]
        return self.decoder(skips)[..., :height, :width]


def build_dino_unet(
    backbone: DinoVisionTransformer,
    num_classes: int,
    interaction_layers: Sequence[int] | None = None,
    widths: Sequence[int] = NNUNET_WIDTHS,
    convs_per_stage: int = 2,
) -> DinoUNet:
    """Dino U-Net around `backbone` (frozen), fed by the ends of the backbone's four quarters
    (blocks 2, 5, 8, 11 of a ViT-B) unless `interaction_layers` says otherwise."""
    layers = interaction_layers if interaction_layers is not None else default_interaction_layers(backbone.n_blocks)
    return DinoUNet(backbone, num_classes, layers, widths, convs_per_stage)
