"""MedDINOv3 segmentation network: DINOv3 encoder + (multi-scale) Primus decoder.

Multi-scale token aggregation: the normed patch tokens of several blocks (2, 5, 8, 11 for a
12-block ViT) are reshaped to maps and concatenated on channels before decoding. The state dict
layout (`dino_encoder.*`, `up_projection.decode.*`) is the reference one, so networks fine-tuned
by the MedDINOv3 release load strictly.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from meddinov3.backbone import DinoVisionTransformer
from meddinov3.errors import InputError
from meddinov3.segmentation.decoder import PrimusDecoder

PAPER_INTERACTION_LAYERS = (2, 5, 8, 11)


class InteractionLayersError(InputError, ValueError):
    """Blocks the multi-scale decoder cannot read from this backbone."""


def default_interaction_layers(depth: int) -> list[int]:
    """Ends of the four quarters of the network: blocks 2, 5, 8, 11 for the paper's 12-block ViT."""
    if depth < 4:
        raise InteractionLayersError(f"multi-scale decoding needs at least 4 blocks, the backbone has {depth}")
    return [depth * q // 4 - 1 for q in (1, 2, 3, 4)]


def adapt_input_channels(backbone: DinoVisionTransformer, in_channels: int) -> None:
    """Give the patch embedding `in_channels` inputs, keeping what pretraining learnt.

    Policy for multi-channel inputs (e.g. several MRI sequences): every new channel gets the mean
    of the pretrained RGB filters scaled by 3 / in_channels, so identical channels respond exactly
    like the grayscale image repeated to RGB did. Each channel can then specialise in fine-tuning.
    """
    conv = backbone.patch_embed.proj
    if conv.in_channels == in_channels:
        return
    mean_filter = conv.weight.detach().mean(dim=1, keepdim=True) * (conv.in_channels / in_channels)
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride)
    with torch.no_grad():
        new.weight.copy_(mean_filter.expand(-1, in_channels, -1, -1))
        new.bias.copy_(conv.bias)
    backbone.patch_embed.proj = new
    backbone.config = backbone.config.replace(in_chans=in_channels)


class MedDINOv3Segmenter(nn.Module):
    def __init__(
        self,
        backbone: DinoVisionTransformer,
        num_classes: int,
        interaction_layers: Sequence[int],
    ):
        super().__init__()
        bad = [i for i in interaction_layers if not 0 <= i < backbone.n_blocks]
        if bad:
            raise ValueError(f"interaction layers {bad} do not exist in a {backbone.n_blocks}-block backbone")
        self.dino_encoder = backbone
        self.interaction_layers = list(interaction_layers)
        self.up_projection = PrimusDecoder(
            backbone.embed_dim * len(self.interaction_layers), num_classes, backbone.patch_size
        )

    def forward(self, x: Tensor) -> Tensor:
        patch = self.dino_encoder.patch_size
        if x.shape[-2] % patch or x.shape[-1] % patch:
            raise ValueError(
                f"input {tuple(x.shape[-2:])} is not a multiple of the patch size {patch}: "
                "choose a patch size (nnU-Net) or pad the image to a multiple of it"
            )
        expected = self.dino_encoder.patch_embed.proj.in_channels
        if x.shape[1] == 1 and expected != 1:
            # A CT slice is one channel; the backbone was pretrained on 3 identical ones.
            x = x.expand(-1, expected, -1, -1)
        elif x.shape[1] != expected:
            raise ValueError(f"the network takes 1 or {expected} input channels, got {x.shape[1]}")
        maps = self.dino_encoder.get_intermediate_layers(x, n=self.interaction_layers, reshape=True, norm=True)
        return self.up_projection(torch.cat(maps, dim=1))


def build_segmenter(
    backbone: DinoVisionTransformer,
    num_classes: int,
    multiscale: bool = True,
    interaction_layers: Sequence[int] = PAPER_INTERACTION_LAYERS,
    in_channels: int | None = None,
) -> MedDINOv3Segmenter:
    """Multi-scale MedDINOv3 network, or (multiscale=False) single-scale Primus on the last block.

    `in_channels`: leave None (or 1) for CT; see `adapt_input_channels` for other counts.
    """
    if in_channels not in (None, 1):
        adapt_input_channels(backbone, in_channels)
    layers = tuple(interaction_layers) if multiscale else (backbone.n_blocks - 1,)
    return MedDINOv3Segmenter(backbone, num_classes, layers)
