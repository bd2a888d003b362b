"""SegFormer (Xie et al., 2021) from Hugging Face `transformers`, randomly initialised.

The decode head predicts at 1/4 of the input resolution; the wrapper upsamples the logits
bilinearly to the input size, which is what nnU-Net's loss and sliding-window inference need.
The MiT variants' sizes are the published ones (B0-B5).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class SegFormerVariant:
    hidden_sizes: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    decoder_hidden_size: int
    num_attention_heads: tuple[int, int, int, int] = (1, 2, 5, 8)


VARIANTS = {
    "b0": SegFormerVariant((32, 64, 160, 256), (2, 2, 2, 2), 256),
    "b1": SegFormerVariant((64, 128, 320, 512), (2, 2, 2, 2), 256),
    "b2": SegFormerVariant((64, 128, 320, 512), (3, 4, 6, 3), 768),
    "b3": SegFormerVariant((64, 128, 320, 512), (3, 4, 18, 3), 768),
    "b4": SegFormerVariant((64, 128, 320, 512), (3, 8, 27, 3), 768),
    "b5": SegFormerVariant((64, 128, 320, 512), (3, 6, 40, 3), 768),
}
PAPER_VARIANT = "b2"


def segformer_config(variant: str, in_channels: int, num_classes: int):
    try:
        from transformers import SegformerConfig
    except ImportError as error:
        raise ImportError(
            "the segformer baseline needs Hugging Face transformers: pip install 'meddinov3[baselines]'"
        ) from error
    if variant not in VARIANTS:
        raise ValueError(f"unknown SegFormer variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    sizes = VARIANTS[variant]
    return SegformerConfig(
        num_channels=in_channels,
        num_labels=num_classes,
        hidden_sizes=list(sizes.hidden_sizes),
        depths=list(sizes.depths),
        num_attention_heads=list(sizes.num_attention_heads),
        decoder_hidden_size=sizes.decoder_hidden_size,
    )


class SegFormer(nn.Module):
    def __init__(self, config):
        super().__init__()
        from transformers import SegformerForSemanticSegmentation

        self.model = SegformerForSemanticSegmentation(config)

    def forward(self, x: Tensor) -> Tensor:
        logits = self.model(pixel_values=x).logits
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def build_segformer(num_classes: int, in_channels: int = 1, variant: str = PAPER_VARIANT) -> SegFormer:
    return SegFormer(segformer_config(variant, in_channels, num_classes))
