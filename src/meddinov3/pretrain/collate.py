"""Batching of multi-crop samples, crop-major as the meta-architecture expects.

Global crops of a batch of B images are laid out [crop 0 of every image, crop 1 of every image],
so `x.unflatten(0, (2, B))` recovers (crop, image). The masks follow the same layout; each masked
patch gets weight 1 / (masked patches of its image) so every image counts once in the iBOT loss.
"""

from __future__ import annotations

from typing import Any

import torch

from meddinov3.pretrain.losses import ibot_masks_weight


def _crop_major(samples: list[dict[str, Any]], key: str) -> torch.Tensor:
    n_crops = len(samples[0][key])
    return torch.stack([sample[key][c] for c in range(n_crops) for sample in samples])


def collate_multicrop(samples: list[dict[str, Any]]) -> dict[str, Any]:
    masks = _crop_major(samples, "masks")  # (2B, N) bool
    mask_indices = masks.flatten().nonzero().flatten()
    batch = {
        "global_crops": _crop_major(samples, "global_crops"),
        "local_crops": _crop_major(samples, "local_crops"),
        "masks": masks,
        "mask_indices": mask_indices,
        "masks_weight": ibot_masks_weight(masks),
        "n_masked_patches": torch.tensor(mask_indices.numel()),
        "indices": torch.tensor([sample["index"] for sample in samples]),
    }
    if "gram_crops" in samples[0]:
        batch["gram_crops"] = _crop_major(samples, "gram_crops")
    return batch
