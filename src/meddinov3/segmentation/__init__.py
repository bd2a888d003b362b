"""Segmentation networks built on the DINOv3 backbone."""

from meddinov3.segmentation.decoder import ChannelLayerNorm, PrimusDecoder
from meddinov3.segmentation.network import (
    PAPER_INTERACTION_LAYERS,
    MedDINOv3Segmenter,
    adapt_input_channels,
    build_segmenter,
    default_interaction_layers,
)

__all__ = [
    "PAPER_INTERACTION_LAYERS",
    "ChannelLayerNorm",
    "MedDINOv3Segmenter",
    "PrimusDecoder",
    "adapt_input_channels",
    "build_segmenter",
    "default_interaction_layers",
]
