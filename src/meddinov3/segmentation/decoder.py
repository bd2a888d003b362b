"""The Primus decoder: a light stack of 2x transposed convolutions from patch tokens to pixels."""

from __future__ import annotations

import math

import torch
from dynamic_network_architectures.initialization.weight_init import InitWeights_He
import torch.nn.functional as F
from torch import Tensor, nn

# The release's decoder initialisation (V/models/primus.py:98, 135): kaiming-normal weights with
# LeakyReLU slope 1e-2 on every Conv2d/ConvTranspose2d, zero biases. PyTorch takes fan_in of a
# ConvTranspose2d weight (in, out, k, k) as out * k * k.
HE_INIT = InitWeights_He(1e-2)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a (B, C, H, W) map, in the dtype of its input.

    One fused layer_norm on a channels-last view: statistics are computed in float32 inside the
    kernel, so float16 inputs cannot overflow in the variance, and the output keeps the input's
    dtype. Autocast is switched off around it because CUDA autocast runs layer_norm in float32,
    which would store this output and the GELU after it at twice the bytes under mixed precision.
    The affine parameters are cast to the input's dtype, as autocast would cast a Linear's weight:
    CUDA's kernel refuses mixed dtypes (CPU's accepts them).
    Autograd keeps only the input and per-pixel mean / inverse deviation for the backward pass.
    The result is channels-last in memory; the convolutions that follow accept that layout.
    """

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(x.device.type, enabled=False):
            weight, bias = self.weight.to(x.dtype), self.bias.to(x.dtype)
            normed = F.layer_norm(x.permute(0, 2, 3, 1), self.weight.shape, weight, bias, self.eps)
        return normed.permute(0, 3, 1, 2)


class PrimusDecoder(nn.Module):
    """log2(patch) stages of ConvTranspose2d(k2, s2) -> channel LayerNorm -> GELU, each halving the
    channels, then a 1x1 convolution to the classes. Layout `decode.{i}.{0,1}`, `decode.{n}`.
    Initialised as the release does (`HE_INIT`); PyTorch's defaults would give weights 2.45x
    smaller in std and random biases."""

    def __init__(self, in_channels: int, num_classes: int, patch_size: int = 16):
        super().__init__()
        n_stages = int(math.log2(patch_size))
        if 2**n_stages != patch_size:
            raise ValueError(f"the Primus decoder needs a power-of-two patch size, got {patch_size}")
        if in_channels % 2**n_stages:
            raise ValueError(f"{in_channels} input channels cannot be halved {n_stages} times")
        stages, channels = [], in_channels
        for _ in range(n_stages):
            stages.append(
                nn.Sequential(
                    nn.ConvTranspose2d(channels, channels // 2, kernel_size=2, stride=2),
                    ChannelLayerNorm(channels // 2),
                    nn.GELU(),
                )
            )
            channels //= 2
        self.decode = nn.Sequential(*stages, nn.Conv2d(channels, num_classes, kernel_size=1))
        self.apply(HE_INIT)

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(x)
