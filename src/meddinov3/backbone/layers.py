"""Building blocks of the DINOv3 ViT: patch embedding, attention, FFNs, LayerScale, block."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from meddinov3.backbone.config import BackboneConfig
from meddinov3.backbone.rope import apply_rope


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens laid out as (B, H/p, W/p, C)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.proj.in_channels * self.patch_size**2)
        nn.init.uniform_(self.proj.weight, -bound, bound)
        nn.init.uniform_(self.proj.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(
                f"input size {h}x{w} is not a multiple of the patch size {self.patch_size}; pad or resize it"
            )
        return self.proj(x).permute(0, 2, 3, 1)


class LayerScale(nn.Module):
    def __init__(self, dim: int, init_value: float):
        super().__init__()
        self.init_value = init_value
        self.gamma = nn.Parameter(torch.full((dim,), init_value))

    def reset_parameters(self) -> None:
        nn.init.constant_(self.gamma, self.init_value)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class LinearKMaskedBias(nn.Linear):
    """qkv projection whose stored bias is multiplied by a 0/1 `bias_mask` (zero on the keys)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__(in_features, out_features, bias=bias)
        if bias:
            mask = torch.ones(out_features)
            mask[out_features // 3 : 2 * out_features // 3] = 0
            self.register_buffer("bias_mask", mask)

    def forward(self, x: Tensor) -> Tensor:
        bias = self.bias * self.bias_mask.to(self.bias.dtype) if self.bias is not None else None
        return F.linear(x, self.weight, bias)


class SelfAttention(nn.Module):
    def __init__(self, config: BackboneConfig):
        super().__init__()
        self.num_heads = config.num_heads
        dim = config.embed_dim
        linear = LinearKMaskedBias if config.mask_k_bias else nn.Linear
        self.qkv = linear(dim, 3 * dim, bias=config.qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=config.proj_bias)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None = None) -> Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        if rope is not None:
            q, k = apply_rope(q, k, rope)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, bias: bool):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwiGLUFFN(nn.Module):
    def __init__(self, dim: int, hidden: int, bias: bool):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=bias)
        self.w2 = nn.Linear(dim, hidden, bias=bias)
        self.w3 = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.w3(F.silu(self.w1(x)) * self.w2(x))


def make_norm(config: BackboneConfig) -> nn.Module:
    if config.norm_layer == "rmsnorm":
        return nn.RMSNorm(config.embed_dim, eps=config.norm_eps)
    return nn.LayerNorm(config.embed_dim, eps=config.norm_eps)


def make_ffn(config: BackboneConfig) -> nn.Module:
    ffn = Mlp if config.ffn_layer == "mlp" else SwiGLUFFN
    return ffn(config.embed_dim, config.ffn_width, bias=config.ffn_bias)


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale and DINOv3's batch-subset stochastic depth.

    Stochastic depth here drops whole samples from a residual branch by computing the branch on
    a random subset of the batch only (and rescaling), which also saves that compute.
    """

    def __init__(self, config: BackboneConfig):
        super().__init__()
        self.norm1 = make_norm(config)
        self.attn = SelfAttention(config)
        self.norm2 = make_norm(config)
        self.mlp = make_ffn(config)
        use_ls = config.layerscale_init is not None
        self.ls1 = LayerScale(config.embed_dim, config.layerscale_init) if use_ls else nn.Identity()
        self.ls2 = LayerScale(config.embed_dim, config.layerscale_init) if use_ls else nn.Identity()
        self.drop_path = config.drop_path_rate

    def _attn_branch(self, x: Tensor, rope) -> Tensor:
        return self.ls1(self.attn(self.norm1(x), rope=rope))

    def _ffn_branch(self, x: Tensor) -> Tensor:
        return self.ls2(self.mlp(self.norm2(x)))

    def _add_on_subset(self, x: Tensor, branch) -> Tensor:
        b = x.shape[0]
        keep = max(int(b * (1 - self.drop_path)), 1)
        idx = torch.randperm(b, device=x.device)[:keep]
        return torch.index_add(x, 0, idx, branch(x[idx]).to(x.dtype), alpha=b / keep)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None = None) -> Tensor:
        if self.training and self.drop_path > 0:
            x = self._add_on_subset(x, lambda t: self._attn_branch(t, rope))
            return self._add_on_subset(x, self._ffn_branch)
        x = x + self._attn_branch(x, rope)
        return x + self._ffn_branch(x)
