"""DINOv3's rotary position embedding as constant tables, for a network exported at one input size.

RoPE's sines and cosines depend only on the grid of patch tokens, not on the image. An exported
network takes one patch size (the plan's), so its grid is fixed: the tables are computed once
by the backbone's own `RopePositionEmbedding` in eval mode (in the dtype of its periods, bfloat16
for MedDINOv3 files) and stored. The graph then carries the tables PyTorch uses, bit for bit,
instead of arange / meshgrid / sin / cos on computed coordinates, which an exporter either
leaves to the runtime (in a dtype ONNX Runtime lacks) or folds with its own arithmetic.
"""

from __future__ import annotations

import copy
import torch
from torch import Tensor, nn

from meddinov3.backbone.rope import RopePositionEmbedding


class FixedRope(nn.Module):
    """The (sin, cos) tables of `rope` on a `grid` of (rows, columns) patch tokens."""

    def __init__(self, rope: RopePositionEmbedding, grid: tuple[int, int]):
        super().__init__()
        self.grid = grid
        evaluating = copy.deepcopy(rope).eval()  # no training-time coordinate augmentation
        with torch.no_grad():
            sin, cos = evaluating(*grid)
        self.register_buffer("sin", sin)
        self.register_buffer("cos", cos)

    def forward(self, h: int, w: int) -> tuple[Tensor, Tensor]:
        if (h, w) != self.grid:
            raise ValueError(f"RoPE tables were made for a {self.grid[0]}x{self.grid[1]} token grid, not {h}x{w}")
        return self.sin, self.cos


def token_grids(network: nn.Module, sample: Tensor) -> dict[RopePositionEmbedding, tuple[int, int]]:
    """The token grid each RoPE module of `network` is asked for when it runs on `sample`.
    Read from a run rather than from the input size: a network may pad its input first."""
    grids: dict[RopePositionEmbedding, set[tuple[int, int]]] = {}

    def record(module: nn.Module, args: tuple) -> None:
        grids.setdefault(module, set()).add((int(args[0]), int(args[1])))

    ropes = [m for m in network.modules() if isinstance(m, RopePositionEmbedding)]
    hooks = [rope.register_forward_pre_hook(record) for rope in ropes]
    try:
        with torch.no_grad():
            network(sample)
    finally:
        for hook in hooks:
            hook.remove()
    several = [sorted(g) for g in grids.values() if len(g) > 1]
    if several:
        raise ValueError(f"a RoPE module ran on several token grids {several[0]}; tables need one")
    return {rope: next(iter(g)) for rope, g in grids.items()}


def with_fixed_rope(network: nn.Module, sample: Tensor) -> nn.Module:
    """A copy of `network` whose DINOv3 RoPE modules look their tables up for inputs shaped like
    `sample`; `network` itself is left as it is."""
    fixed = copy.deepcopy(network).eval()
    grids = token_grids(fixed, sample)
    for parent in list(fixed.modules()):
        for name, child in list(parent.named_children()):
            if child in grids:
                setattr(parent, name, FixedRope(child, grids[child]))
    return fixed
