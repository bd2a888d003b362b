"""The adapter of Dino U-Net: a frozen DINOv3 ViT's features fused with a convolutional spatial prior.

Layout of the DINOv3 / ViT-Adapter design that Dino U-Net builds on:
- a spatial prior module (SPM), a small CNN on the image, gives maps at 1/4, 1/8, 1/16, 1/32,
  each projected to the ViT width;
- the 1/8-1/32 maps, flattened into one token sequence, query the ViT's patch tokens of one
  intermediate block per interaction step through deformable cross-attention plus a
  convolutional FFN (an "extractor"); the last step has two extra extractors;
- the ViT is frozen, so information only flows from the ViT into the spatial tokens (no
  injector into the ViT, as in DINOv3's frozen-backbone adapter); the ViT is run by the network
  that owns it (`dino_unet.py`), this module gets its maps;
- outputs: the 1/4 map (the SPM's, plus the upsampled 1/8 tokens) and the 1/8-1/32 token maps,
  each plus the matching ViT block's patch map resized to its scale, batch-normalised.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from meddinov3.baselines.deformable import DeformableCrossAttention, reference_points

# Strides of the adapter's outputs relative to the input image.
ADAPTER_STRIDES = (4, 8, 16, 32)


def conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class SpatialPriorModule(nn.Module):
    """Stem to 1/4 (three 3x3 convs and a max-pool), then one strided conv per further level."""

    def __init__(self, in_channels: int, dim: int, width: int = 64):
        super().__init__()
        self.stem = nn.Sequential(
            *conv_bn_relu(in_channels, width, stride=2),
            *conv_bn_relu(width, width),
            *conv_bn_relu(width, width),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        self.down8 = nn.Sequential(*conv_bn_relu(width, 2 * width, stride=2))
        self.down16 = nn.Sequential(*conv_bn_relu(2 * width, 4 * width, stride=2))
        self.down32 = nn.Sequential(*conv_bn_relu(4 * width, 4 * width, stride=2))
        self.project = nn.ModuleList(
            nn.Conv2d(c, dim, kernel_size=1) for c in (width, 2 * width, 4 * width, 4 * width)
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        c4 = self.stem(x)
        c8 = self.down8(c4)
        c16 = self.down16(c8)
        c32 = self.down32(c16)
        return [proj(c) for proj, c in zip(self.project, (c4, c8, c16, c32))]


class MultiLevelConvFFN(nn.Module):
    """Linear -> depthwise 3x3 conv on each level's grid -> GELU -> linear, over concatenated tokens."""

    def __init__(self, dim: int, hidden_ratio: float = 0.25):
        super().__init__()
        hidden = int(dim * hidden_ratio)
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, tokens: Tensor, shapes: Sequence[tuple[int, int]]) -> Tensor:
        x = self.fc1(tokens)
        b, _, c = x.shape
        levels, start = [], 0
        for h, w in shapes:
            level = x[:, start : start + h * w].transpose(1, 2).reshape(b, c, h, w)
            levels.append(self.dwconv(level).flatten(2).transpose(1, 2))
            start += h * w
        return self.fc2(F.gelu(torch.cat(levels, dim=1)))


class Extractor(nn.Module):
    """Spatial tokens gather ViT features: deformable cross-attention, then a convolutional FFN."""

    def __init__(self, dim: int, num_heads: int, num_points: int = 4, value_ratio: float = 0.5):
        super().__init__()
        self.query_norm = nn.LayerNorm(dim, eps=1e-6)
        self.feature_norm = nn.LayerNorm(dim, eps=1e-6)
        self.attention = DeformableCrossAttention(dim, num_heads, num_points, value_ratio)
        self.ffn_norm = nn.LayerNorm(dim, eps=1e-6)
        self.ffn = MultiLevelConvFFN(dim)

    def forward(self, tokens: Tensor, points: Tensor, vit_map: Tensor, shapes: Sequence[tuple[int, int]]) -> Tensor:
        features = self.feature_norm(vit_map.flatten(2).transpose(1, 2))
        features = features.transpose(1, 2).reshape(vit_map.shape)
        tokens = tokens + self.attention(self.query_norm(tokens), points, features)
        return tokens + self.ffn(self.ffn_norm(tokens), shapes)


class DinoAdapter(nn.Module):
    """SPM + extractors: the image and four ViT block maps -> four maps of the ViT width at strides 4-32.

    The ViT itself is not part of this module (the network owns it, frozen); `vit_maps` are its
    normed patch maps of the interaction blocks, shallow to deep, each matched to one output scale
    from fine to coarse.
    """

    def __init__(
        self,
        in_channels: int,
        dim: int,
        num_heads: int,
        num_interactions: int = len(ADAPTER_STRIDES),
        spm_width: int = 64,
        num_points: int = 4,
        value_ratio: float = 0.5,
        extra_extractors: int = 2,
    ):
        super().__init__()
        if num_interactions != len(ADAPTER_STRIDES):
            raise ValueError(f"the adapter fuses exactly {len(ADAPTER_STRIDES)} ViT blocks, got {num_interactions}")
        self.spm = SpatialPriorModule(in_channels, dim, spm_width)
        self.level_embed = nn.Parameter(torch.randn(3, dim))
        self.extractors = nn.ModuleList(
            Extractor(dim, num_heads, num_points, value_ratio) for _ in range(num_interactions)
        )
        self.final_extractors = nn.ModuleList(
            Extractor(dim, num_heads, num_points, value_ratio) for _ in range(extra_extractors)
        )
        self.up = nn.ConvTranspose2d(dim, dim, kernel_size=2, stride=2)
        self.norms = nn.ModuleList(nn.BatchNorm2d(dim) for _ in ADAPTER_STRIDES)

    def forward(self, x: Tensor, vit_maps: Sequence[Tensor]) -> list[Tensor]:
        c4, *coarse = self.spm(x)
        shapes = [(c.shape[-2], c.shape[-1]) for c in coarse]
        tokens = torch.cat(
            [c.flatten(2).transpose(1, 2) + self.level_embed[i] for i, c in enumerate(coarse)], dim=1
        )
        points = reference_points(shapes, x.device).to(tokens.dtype)
        for extractor, vit_map in zip(self.extractors, vit_maps):
            tokens = extractor(tokens, points, vit_map, shapes)
        for extractor in self.final_extractors:
            tokens = extractor(tokens, points, vit_maps[-1], shapes)

        maps, start = [], 0
        for h, w in shapes:
            maps.append(tokens[:, start : start + h * w].transpose(1, 2).reshape(x.shape[0], -1, h, w))
            start += h * w
        maps.insert(0, c4 + self.up(maps[0]))
        outputs = []
        for norm, level, vit_map in zip(self.norms, maps, vit_maps):
            resized = F.interpolate(vit_map, size=level.shape[-2:], mode="bilinear", align_corners=False)
            outputs.append(norm(level + resized))
        return outputs
