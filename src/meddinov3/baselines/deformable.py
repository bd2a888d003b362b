"""Deformable cross-attention over one feature map, in plain PyTorch (runs on CPU and GPU).

Deformable DETR's attention: every query predicts, per head, a few sampling offsets around its
reference point and a softmax weight for each; the output is the weighted sum of the value map
sampled bilinearly at those points. The published operator is a CUDA kernel; here the sampling
is `torch.nn.functional.grid_sample`, which computes the same bilinear interpolation (zero
outside the map) on any device. The ViT-Adapter extractor that Dino U-Net uses attends to a
single map (the ViT's patch grid), so only the one-level case is implemented.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class DeformableCrossAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, num_points: int = 4, value_ratio: float = 0.5):
        super().__init__()
        value_dim = int(dim * value_ratio)
        if value_dim % num_heads:
            raise ValueError(f"value width {value_dim} (= {dim} x {value_ratio}) is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.num_points = num_points
        self.head_dim = value_dim // num_heads
        self.value_proj = nn.Linear(dim, value_dim)
        self.sampling_offsets = nn.Linear(dim, num_heads * num_points * 2)
        self.attention_weights = nn.Linear(dim, num_heads * num_points)
        self.output_proj = nn.Linear(value_dim, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable DETR's initialisation: offsets start on rays, one direction per head, the
        k-th point k pixels out; uniform attention; Xavier projections."""
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.num_heads, dtype=torch.float32) * (2.0 * math.pi / self.num_heads)
        directions = torch.stack([angles.cos(), angles.sin()], dim=-1)
        directions = directions / directions.abs().max(dim=-1, keepdim=True).values
        steps = torch.arange(1, self.num_points + 1, dtype=torch.float32)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_((directions[:, None, :] * steps[None, :, None]).flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for linear in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)

    def forward(self, query: Tensor, reference_points: Tensor, value_map: Tensor) -> Tensor:
        """query (B, Nq, C); reference_points (1 or B, Nq, 2) as (x, y) in [0, 1]; value_map (B, C, H, W)."""
        b, nq, _ = query.shape
        h, w = value_map.shape[-2:]
        value = self.value_proj(value_map.flatten(2).transpose(1, 2))  # (B, HW, Cv)
        value = value.transpose(1, 2).reshape(b * self.num_heads, self.head_dim, h, w)

        offsets = self.sampling_offsets(query).view(b, nq, self.num_heads, self.num_points, 2)
        # Offsets are in pixels of the value map; locations are normalised to [0, 1].
        scale = torch.tensor([w, h], dtype=offsets.dtype, device=offsets.device)
        locations = reference_points[:, :, None, None, :] + offsets / scale
        weights = self.attention_weights(query).view(b, nq, self.num_heads, self.num_points).softmax(-1)

        # grid_sample wants (N, Hout, Wout, 2) in [-1, 1]: one row per query, one column per point.
        grid = (2.0 * locations - 1.0).permute(0, 2, 1, 3, 4).reshape(b * self.num_heads, nq, self.num_points, 2)
        sampled = F.grid_sample(value, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        weights = weights.permute(0, 2, 1, 3).reshape(b * self.num_heads, 1, nq, self.num_points)
        out = (sampled * weights).sum(-1)  # (B*heads, head_dim, Nq)
        out = out.view(b, self.num_heads * self.head_dim, nq).transpose(1, 2)
        return self.output_proj(out)


def reference_points(shapes: list[tuple[int, int]], device: torch.device) -> Tensor:
    """Pixel centres of each (h, w) grid in turn, as (x, y) in [0, 1]: (1, sum h*w, 2)."""
    points = []
    for h, w in shapes:
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack([grid_x.flatten(), grid_y.flatten()], dim=-1))
    return torch.cat(points)[None]
