"""nnU-Net's sliding-window inference, batched, on the prediction device.

The same tiles (nnU-Net's `compute_steps_for_sliding_window`, images smaller than a tile padded
by its `pad_nd_image`), the same Gaussian tile weights (`compute_gaussian`, sigma 1/8 of the
tile) and the same test-time mirroring (the mean over every combination of the allowed axes) as
nnU-Net's predictor. What differs, for speed: tiles and their mirrored copies go through the
network together as one batch (nnU-Net runs one tile and one mirroring at a time); logits
accumulate in float32 on the device (nnU-Net: float16, on the CPU unless on CUDA); and where one
tile covers each item whole, tiles are the items themselves (no copies) and the Gaussian
weighting is left out: each voxel then has one prediction, whose weight divides out.

Items are what tiles are cut from: the slices of a block for 2D configurations, (N, c, y, x);
the volume for 3D ones, (1, c, z, y, x).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

Network = Callable[[torch.Tensor], torch.Tensor]

@dataclass(frozen=True)
class Window:
    patch_size: tuple[int, ...]
    step: float  # nnU-Net's tile_step_size: tiles overlap by 1 - step of their size
    mirror_axes: tuple[int, ...]  # spatial axes (0-based) averaged over mirrorings; () for none
    images_per_forward: int  # tiles x mirrorings in one network call

    @property
    def flips(self) -> list[tuple[int, ...]]:
        """Every combination of the mirror axes, as dimensions of a (batch, channel, ...) tensor."""
        axes = [axis + 2 for axis in self.mirror_axes]
        return [combo for n in range(1, len(axes) + 1) for combo in itertools.combinations(axes, n)]

    @property
    def tiles_per_forward(self) -> int:
        return max(1, self.images_per_forward // (1 + len(self.flips)))


def predict_tiles(networks: Sequence[Network], tiles: torch.Tensor, window: Window) -> torch.Tensor:
    """Logits of a batch of tiles: the mean over the networks (folds) and the mirrorings, float32."""
    flips = window.flips
    batch = torch.cat([tiles, *(tiles.flip(dims) for dims in flips)]) if flips else tiles
    total = None
    for network in networks:
        parts = network(batch).float().split(len(tiles))
        for part, dims in zip(parts, [(), *flips]):
            part = part.flip(dims) if dims else part
            total = part if total is None else total.add_(part)
    count = len(networks) * (1 + len(flips))
    return total if count == 1 else total.div_(count)


def _corner_slices(corner: Sequence[int], patch_size: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(start, start + size) for start, size in zip(corner, patch_size))


def sliding_window_logits(
    networks: Sequence[Network], items: torch.Tensor, window: Window, num_classes: int
) -> Iterator[tuple[int, torch.Tensor]]:
    """(first item, logits of the following items (n, classes, *item shape)) for `items`, in order.

    With one tile per item the items come back a network call at a time; otherwise all at once,
    after every tile has been added in."""
    from acvl_utils.cropping_and_padding.padding import pad_nd_image
    from nnunetv2.inference.sliding_window_prediction import compute_gaussian, compute_steps_for_sliding_window

    padded, unpad = pad_nd_image(items, window.patch_size, "constant", {"value": 0}, True)
    unpad = (slice(None), slice(None), *unpad[2:])
    spatial = tuple(padded.shape[2:])
    corners = list(itertools.product(*compute_steps_for_sliding_window(spatial, window.patch_size, window.step)))
    per_forward = window.tiles_per_forward
    if len(corners) == 1:
        for first in range(0, len(padded), per_forward):
            yield first, predict_tiles(networks, padded[first : first + per_forward], window)[unpad]
        return
    gaussian = compute_gaussian(window.patch_size, sigma_scale=1.0 / 8, value_scaling_factor=10,
                                dtype=torch.float32, device=items.device)
    logits = torch.zeros((len(padded), num_classes, *spatial), dtype=torch.float32, device=items.device)
    weights = torch.zeros(spatial, dtype=torch.float32, device=items.device)
    for corner in corners:
        weights[_corner_slices(corner, window.patch_size)] += gaussian
    tiles = [(item, _corner_slices(corner, window.patch_size)) for item in range(len(padded)) for corner in corners]
    for start in range(0, len(tiles), per_forward):
        group = tiles[start : start + per_forward]
        batch = torch.stack([padded[(item, slice(None), *where)] for item, where in group])
        for (item, where), tile_logits in zip(group, predict_tiles(networks, batch, window)):
            logits[(item, slice(None), *where)] += tile_logits.mul_(gaussian)
    yield 0, logits.div_(weights)[unpad]
