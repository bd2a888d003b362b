"""SegFormer as the MedDINOv3 release trains it: its own MiT-B2 and decode head, from scratch.

Written from the facts sheet (RECIPES.md section 2; `T/segformerTrainer.py` of the release):
- encoder: Mix Transformer B2, four stages of overlapping patch embedding (conv + LayerNorm),
  pre-norm blocks with spatial-reduction attention and the "mix_skip" feed-forward network
  (fc1, plus a depthwise 3x3 conv of its output added to itself, LayerNorm, GELU, fc2), and a
  LayerNorm per stage; no drop path or dropout;
- decode head: each stage linearly projected to 768, resized to 1/4, concatenated deepest
  first, fused by a 1x1 conv + BatchNorm + ReLU, Dropout2d(0.2), a 1x1 classifier, and a
  learned ConvTranspose2d(k4, s4) back to the input resolution;
- initialisation: xavier-uniform Linear and Conv2d weights, zero biases; LayerNorm 1/0;
  BatchNorm and the ConvTranspose2d keep PyTorch's defaults;
- input: one channel is tiled to three; other channel counts go in unchanged.
The release's FFN also builds two LayerNorms it never uses; they are left out here (they would
add parameters that never train and change nothing computed).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class MiTConfig:
    embed_dims: tuple[int, ...] = (64, 128, 320, 512)
    depths: tuple[int, ...] = (3, 4, 6, 3)
    num_heads: tuple[int, ...] = (1, 2, 5, 8)
    sr_ratios: tuple[int, ...] = (8, 4, 2, 1)
    patch_kernels: tuple[int, ...] = (7, 3, 3, 3)
    patch_strides: tuple[int, ...] = (4, 2, 2, 2)
    mlp_ratio: int = 4
    decoder_dim: int = 768
    head_dropout: float = 0.2


MIT_B2 = MiTConfig()  # T/segformerTrainer.py:1516-1591, 1631


def tokens_to_map(x: Tensor, hw: tuple[int, int]) -> Tensor:
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *hw)


class OverlapPatchEmbed(nn.Module):
    def __init__(self, in_channels: int, dim: int, kernel: int, stride: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel, stride, padding=kernel // 2)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        x = self.proj(x)
        return self.norm(x.flatten(2).transpose(1, 2)), (x.shape[-2], x.shape[-1])


class EfficientSelfAttention(nn.Module):
    """Multi-head attention whose keys and values come from the map shrunk r times per side."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        reduce = sr_ratio > 1
        self.sr = nn.Conv2d(dim, dim, sr_ratio, stride=sr_ratio) if reduce else None
        self.norm = nn.LayerNorm(dim) if reduce else None

    def forward(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        b, n, c = x.shape
        heads = self.num_heads
        q = self.q(x).reshape(b, n, heads, c // heads).transpose(1, 2)
        source = x if self.sr is None else self.norm(self.sr(tokens_to_map(x, hw)).flatten(2).transpose(1, 2))
        k, v = self.kv(source).reshape(b, -1, 2, heads, c // heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class MixSkipFFN(nn.Module):
    """fc1 -> (+ depthwise 3x3 conv of itself) -> LayerNorm -> GELU -> fc2."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.norm = nn.LayerNorm(hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        x = self.fc1(x)
        x = x + self.dwconv(tokens_to_map(x, hw)).flatten(2).transpose(1, 2)
        return self.fc2(F.gelu(self.norm(x)))


class MiTBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, sr_ratio: int, mlp_ratio: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = EfficientSelfAttention(dim, num_heads, sr_ratio)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MixSkipFFN(dim, mlp_ratio * dim)

    def forward(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        x = x + self.attn(self.norm1(x), hw)
        return x + self.mlp(self.norm2(x), hw)


class MiTStage(nn.Module):
    def __init__(self, config: MiTConfig, index: int, in_channels: int):
        super().__init__()
        dim = config.embed_dims[index]
        self.patch_embed = OverlapPatchEmbed(in_channels, dim, config.patch_kernels[index], config.patch_strides[index])
        self.blocks = nn.ModuleList(
            MiTBlock(dim, config.num_heads[index], config.sr_ratios[index], config.mlp_ratio)
            for _ in range(config.depths[index])
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        x, hw = self.patch_embed(x)
        for block in self.blocks:
            x = block(x, hw)
        return tokens_to_map(self.norm(x), hw)


class SegFormerHead(nn.Module):
    def __init__(self, config: MiTConfig, num_classes: int):
        super().__init__()
        dim = config.decoder_dim
        self.linear = nn.ModuleList(nn.Linear(c, dim) for c in config.embed_dims)
        self.fuse = nn.Sequential(
            nn.Conv2d(len(config.embed_dims) * dim, dim, 1, bias=False), nn.BatchNorm2d(dim), nn.ReLU(inplace=True)
        )
        self.dropout = nn.Dropout2d(config.head_dropout)
        self.classifier = nn.Conv2d(dim, num_classes, 1)
        self.upsample = nn.ConvTranspose2d(num_classes, num_classes, kernel_size=4, stride=4)

    def forward(self, maps: list[Tensor]) -> Tensor:
        size = maps[0].shape[-2:]
        projected = []
        for linear, x in zip(self.linear, maps):
            x = tokens_to_map(linear(x.flatten(2).transpose(1, 2)), x.shape[-2:])
            projected.append(F.interpolate(x, size=size, mode="bilinear", align_corners=False))
        fused = self.fuse(torch.cat(projected[::-1], dim=1))
        return self.upsample(self.classifier(self.dropout(fused)))


class SegFormer(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 1, config: MiTConfig = MIT_B2):
        super().__init__()
        channels = 3 if in_channels == 1 else in_channels
        stages = []
        for index, dim in enumerate(config.embed_dims):
            stages.append(MiTStage(config, index, channels))
            channels = dim
        self.stages = nn.ModuleList(stages)
        self.head = SegFormerHead(config, num_classes)
        self.apply(init_weights)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2] % 4 or x.shape[-1] % 4:
            raise ValueError(f"SegFormer needs input sides that are multiples of 4, got {tuple(x.shape[-2:])}")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return self.head(maps)


def init_weights(module: nn.Module) -> None:
    """The release's: xavier-uniform Linear and Conv2d (not ConvTranspose2d) weights, zero biases."""
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        module.reset_parameters()


def build_segformer(num_classes: int, in_channels: int = 1, config: MiTConfig = MIT_B2) -> SegFormer:
    return SegFormer(num_classes, in_channels, config)
