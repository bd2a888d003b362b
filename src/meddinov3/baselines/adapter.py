"""Dino U-Net's adapter: a frozen DINOv3 ViT's features fused with a convolutional spatial prior.

As the release builds it (`DINOv3_Adapter`; facts sheet RECIPES.md 3.2, `A:` = DINOv3's
`eval/segmentation/models/backbone/dinov3_adapter.py`):
- spatial prior module (SPM): a small CNN on the image gives maps at 1/4, 1/8, 1/16, 1/32, each
  projected to the ViT width by a 1x1 conv; a learned level embedding marks the 1/8-1/32 maps,
  which are flattened into one query sequence;
- no injectors (the ViT is frozen): four interactions each run one extractor on the normed patch
  map of one ViT block (2, 5, 8, 11), the last one two more (six in all). An extractor is
  deformable cross-attention (16 heads, 4 points, values at half width) from the queries to the
  ViT map, then a convolutional FFN behind drop path 0.3, each on LayerNormed inputs (eps 1e-6);
  extractors run with gradient checkpointing;
- outputs: the 1/4 map plus the 2x transposed-conv of the 1/8 one, and the three query maps, each
  plus the matching ViT block's map resized to its scale, each through its own BatchNorm.
The ViT is not part of this module: the network that owns it (`dino_unet.py`) passes its maps.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

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
    """Stem to 1/4 (three 3x3 convs and a max-pool), then one strided conv per further level (A:234-302)."""

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
    """Linear -> depthwise 3x3 conv on each level's grid (one conv for all) -> GELU -> linear (A:73-109)."""

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


def drop_path(x: Tensor, rate: float, training: bool) -> Tensor:
    """Stochastic depth per sample: the branch is zeroed for a random `rate` of the batch, rescaled otherwise."""
    if not training or rate == 0.0:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1.0 - rate)
    return x * keep / (1.0 - rate)


class Extractor(nn.Module):
    """Spatial tokens gather ViT features: deformable cross-attention, then a convolutional FFN (A:140-149)."""

    def __init__(self, dim: int, num_heads: int, num_points: int, value_ratio: float, drop_path_rate: float):
        super().__init__()
        self.query_norm = nn.LayerNorm(dim, eps=1e-6)
        self.feat_norm = nn.LayerNorm(dim, eps=1e-6)
        self.attn = DeformableCrossAttention(dim, num_heads, num_points, value_ratio)
        self.ffn_norm = nn.LayerNorm(dim, eps=1e-6)
        self.ffn = MultiLevelConvFFN(dim)
        self.drop_path_rate = drop_path_rate

    def forward(self, tokens: Tensor, points: Tensor, vit_map: Tensor, shapes: Sequence[tuple[int, int]]) -> Tensor:
        features = self.feat_norm(vit_map.flatten(2).transpose(1, 2))
        features = features.transpose(1, 2).reshape(vit_map.shape)
        tokens = tokens + self.attn(self.query_norm(tokens), points, features)
        return tokens + drop_path(self.ffn(self.ffn_norm(tokens), shapes), self.drop_path_rate, self.training)


class DinoAdapter(nn.Module):
    """SPM + extractors: the image and four ViT block maps -> four maps of the ViT width at strides 4-32.

    `vit_maps` are the normed patch maps of the interaction blocks, shallow to deep; map i feeds
    interaction i and is added to output i (fine to coarse).
    """

    def __init__(
        self,
        in_channels: int,
        dim: int,
        num_heads: int = 16,
        num_points: int = 4,
        value_ratio: float = 0.5,
        drop_path_rate: float = 0.3,
        extra_extractors: int = 2,
        spm_width: int = 64,
        gradient_checkpointing: bool = True,
    ):
        super().__init__()
        self.spm = SpatialPriorModule(in_channels, dim, spm_width)
        self.level_embed = nn.Parameter(torch.empty(3, dim))
        n_extractors = len(ADAPTER_STRIDES) + extra_extractors
        self.extractors = nn.ModuleList(
            Extractor(dim, num_heads, num_points, value_ratio, drop_path_rate) for _ in range(n_extractors)
        )
        self.up = nn.ConvTranspose2d(dim, dim, kernel_size=2, stride=2)
        self.norms = nn.ModuleList(nn.BatchNorm2d(dim) for _ in ADAPTER_STRIDES)
        self.gradient_checkpointing = gradient_checkpointing
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """A:366-385: Linear trunc-normal(0.02) with zero bias, level embedding N(0, 1), then the
        deformable attention's own initialisation. (Convs are re-initialised by the network.)"""
        nn.init.normal_(self.level_embed)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        for module in self.modules():
            if isinstance(module, DeformableCrossAttention):
                module.reset_parameters()

    def extract(self, extractor: Extractor, *args) -> Tensor:
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(extractor, *args, use_reentrant=False)
        return extractor(*args)

    def forward(self, x: Tensor, vit_maps: Sequence[Tensor]) -> list[Tensor]:
        if len(vit_maps) != len(ADAPTER_STRIDES):
            raise ValueError(f"the adapter fuses {len(ADAPTER_STRIDES)} ViT block maps, got {len(vit_maps)}")
        c4, *coarse = self.spm(x)
        shapes = [(c.shape[-2], c.shape[-1]) for c in coarse]
        tokens = torch.cat(
            [c.flatten(2).transpose(1, 2) + self.level_embed[i] for i, c in enumerate(coarse)], dim=1
        )
        points = reference_points(shapes, x.device).to(tokens.dtype)
        # Interactions 1-4 take blocks 2, 5, 8, 11; the extra extractors take the last one again.
        inputs = list(vit_maps) + [vit_maps[-1]] * (len(self.extractors) - len(vit_maps))
        for extractor, vit_map in zip(self.extractors, inputs):
            tokens = self.extract(extractor, tokens, points, vit_map, shapes)

        maps, start = [], 0
        for h, w in shapes:
            maps.append(tokens[:, start : start + h * w].transpose(1, 2).reshape(x.shape[0], -1, h, w))
            start += h * w
        maps.insert(0, c4 + self.up(maps[0]))
        outputs = []
        for norm, level, vit_map in zip(self.norms, maps, vit_maps):
            if vit_map.shape[-2:] != level.shape[-2:]:
                vit_map = F.interpolate(vit_map, size=level.shape[-2:], mode="bilinear", align_corners=False)
            outputs.append(norm(level + vit_map))
        return outputs
