"""iBOT block masking: rectangles of patches, random area and aspect ratio, up to a target count.

The student sees the mask token in place of these patches and predicts the teacher's view of
them. Blocks (rather than scattered patches) make the task need context, not interpolation.
Which images are masked, and how much, is decided over the whole global batch
(`mask_ratio_for_slot`) so that a run on N processes masks exactly as one process would.
"""

from __future__ import annotations

import math

import torch


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * torch.rand((), generator=generator).item()


def _randint(generator: torch.Generator, low: int, high_inclusive: int) -> int:
    return int(torch.randint(low, high_inclusive + 1, (), generator=generator).item())


def _add_block(
    mask: torch.Tensor,
    max_new: int,
    generator: torch.Generator,
    min_block: int,
    log_aspect: tuple[float, float],
    attempts: int = 10,
) -> int:
    """Try to mask one more rectangle adding at most `max_new` patches; returns how many it added."""
    height, width = mask.shape
    for _ in range(attempts):
        area = _uniform(generator, min_block, max_new)
        aspect = math.exp(_uniform(generator, *log_aspect))
        h = int(round(math.sqrt(area * aspect)))
        w = int(round(math.sqrt(area / aspect)))
        if not (0 < h < height and 0 < w < width):
            continue
        top = _randint(generator, 0, height - h)
        left = _randint(generator, 0, width - w)
        window = mask[top : top + h, left : left + w]
        added = h * w - int(window.sum())
        if 0 < added <= max_new:
            window.fill_(True)
            return added
    return 0


def block_mask(
    grid: tuple[int, int],
    n_masked: int,
    generator: torch.Generator,
    min_block: int = 4,
    max_fraction: float = 0.5,
    min_aspect: float = 0.3,
) -> torch.Tensor:
    """Boolean (h, w) mask with about `n_masked` patches set, in rectangular blocks.

    Stops early when no further block fits, so the count can fall short of the target.
    """
    mask = torch.zeros(grid, dtype=torch.bool)
    cap = int(max_fraction * grid[0] * grid[1])
    log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))
    count = 0
    while count < n_masked:
        budget = min(n_masked - count, cap)
        added = _add_block(mask, budget, generator, min_block, log_aspect)
        if added == 0:
            break
        count += added
    return mask


def mask_ratio_for_slot(
    slot: int,
    n_slots: int,
    iteration_generator: torch.Generator,
    sample_generator: torch.Generator,
    probability: float,
    ratio_range: tuple[float, float],
) -> float:
    """Masking ratio of global-crop `slot` among the `n_slots` global crops of the global batch.

    As in DINOv2/v3, a fraction `probability` of the crops is masked and their ratios are spread
    evenly over `ratio_range` (one ratio bin per masked crop); which crop gets which bin is a
    permutation drawn once per iteration. `iteration_generator` must be seeded identically for
    every sample of the iteration.
    """
    n_masked_slots = int(n_slots * probability)
    order = torch.randperm(n_slots, generator=iteration_generator)
    rank = int(order[slot])
    if rank >= n_masked_slots:
        return 0.0
    edges = torch.linspace(ratio_range[0], ratio_range[1], n_masked_slots + 1)
    return _uniform(sample_generator, float(edges[rank]), float(edges[rank + 1]))
