"""2D rotary position embedding of DINOv3, applied to patch tokens only.

Each head dimension is split in four: a quarter of the frequencies rotates with the row
coordinate, a quarter with the column coordinate, and the rotation is applied to the two halves
of the head ("rotate half" convention). Coordinates are patch centres mapped to [-1, 1].

RoPE runs in the dtype of its periods with autocast off: the function is defined in that dtype
(bfloat16 for MedDINOv3), and fp16 autocast rejects bfloat16 inputs to stack and cat outright.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from meddinov3.backbone.config import ROPE_DTYPES, BackboneConfig


def rope_periods(config: BackboneConfig, dtype: torch.dtype) -> Tensor:
    """Periods of the D_head / 4 frequencies, computed in `dtype` as DINOv3 does."""
    n = config.head_dim // 4
    if config.rope_base is not None:
        exponents = 2 * torch.arange(n, dtype=dtype) / (config.head_dim // 2)
        return config.rope_base**exponents
    ratio = config.rope_max_period / config.rope_min_period
    periods = ratio ** torch.linspace(0, 1, n, dtype=dtype)
    return periods / ratio * config.rope_max_period


class RopePositionEmbedding(nn.Module):
    def __init__(self, config: BackboneConfig):
        super().__init__()
        self.normalize_coords = config.rope_normalize_coords
        self.shift_coords = config.rope_shift_coords
        self.jitter_coords = config.rope_jitter_coords
        self.rescale_coords = config.rope_rescale_coords
        # Stored with the weights: MedDINOv3 keeps bfloat16 periods and computes RoPE in bfloat16.
        self.register_buffer("periods", rope_periods(config, ROPE_DTYPES[config.rope_dtype]), persistent=True)

    @property
    def dtype(self) -> torch.dtype:
        return self.periods.dtype

    def patch_coords(self, h: int, w: int) -> Tensor:
        """Patch centres in [-1, 1], shape (h * w, 2), row-major over (row, column)."""
        factory = dict(device=self.periods.device, dtype=self.periods.dtype)
        if self.normalize_coords == "max":
            denom_h = denom_w = max(h, w)
        elif self.normalize_coords == "min":
            denom_h = denom_w = min(h, w)
        else:
            denom_h, denom_w = h, w
        coords_h = torch.arange(0.5, h, **factory) / denom_h
        coords_w = torch.arange(0.5, w, **factory) / denom_w
        coords = torch.stack(torch.meshgrid(coords_h, coords_w, indexing="ij"), dim=-1).flatten(0, 1)
        return 2.0 * coords - 1.0

    def augment_coords(self, coords: Tensor) -> Tensor:
        """Training-time position augmentation: random shift, per-axis jitter, global rescale."""
        factory = dict(device=coords.device, dtype=coords.dtype)
        if self.shift_coords is not None:
            coords = coords + torch.empty(2, **factory).uniform_(-self.shift_coords, self.shift_coords)[None, :]
        if self.jitter_coords is not None:
            limit = math.log(self.jitter_coords)
            coords = coords * torch.empty(2, **factory).uniform_(-limit, limit).exp()[None, :]
        if self.rescale_coords is not None:
            limit = math.log(self.rescale_coords)
            coords = coords * torch.empty(1, **factory).uniform_(-limit, limit).exp()
        return coords

    def forward(self, h: int, w: int) -> tuple[Tensor, Tensor]:
        """(sin, cos), each (h * w, head_dim), in the dtype of the stored periods."""
        with torch.autocast(self.periods.device.type, enabled=False):
            coords = self.patch_coords(h, w)
            if self.training:
                coords = self.augment_coords(coords)
            angles = 2 * math.pi * coords[:, :, None] / self.periods[None, None, :]
            angles = angles.flatten(1, 2).tile(2)
            return torch.sin(angles), torch.cos(angles)


def rotate_half(x: Tensor) -> Tensor:
    """(first, second) -> (-second, first) over the last axis, as a roll and a sign: unlike chunk and
    cat, its backward has no op that autocast promotes, which compiled fp16 training would trace
    (inside fp16 autocast, with bfloat16 gradients) and reject."""
    half = x.shape[-1] // 2
    sign = torch.ones(x.shape[-1], dtype=x.dtype, device=x.device)
    sign[:half] = -1
    return x.roll(half, dims=-1) * sign


def apply_rope(q: Tensor, k: Tensor, rope: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """Rotate the patch tokens of q and k (B, heads, N, D); prefix tokens pass through.

    The whole tensors, prefix included, round-trip through the RoPE dtype: with bfloat16 periods
    that rounding is part of the function the MedDINOv3 checkpoint was trained with.
    """
    sin, cos = rope
    n_prefix = q.shape[-2] - sin.shape[-2]
    out = []
    with torch.autocast(q.device.type, enabled=False):
        for t in (q, k):
            work = t.to(sin.dtype)
            rotated = work[:, :, n_prefix:] * cos + rotate_half(work[:, :, n_prefix:]) * sin
            out.append(torch.cat((work[:, :, :n_prefix], rotated), dim=-2).to(t.dtype))
    return out[0], out[1]
