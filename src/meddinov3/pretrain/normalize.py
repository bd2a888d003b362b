"""The intensity space the CT augmentations work in: the HU window mapped to [0, 1].

The model input itself is `meddinov3.intensity.normalize_ct` (MedDINOv3's clip, mean and std).
"""

from __future__ import annotations

import torch

from meddinov3.intensity import HU_CLIP, normalize_ct

HU_MIN, HU_MAX = HU_CLIP


def hu_to_unit(hu: torch.Tensor) -> torch.Tensor:
    """HU clipped to the window and mapped to [0, 1], the range the intensity augmentations work in."""
    return (hu.float().clamp(HU_MIN, HU_MAX) - HU_MIN) / (HU_MAX - HU_MIN)


def unit_to_input(unit: torch.Tensor) -> torch.Tensor:
    """[0, 1] window values (..., H, W) -> normalised 3-channel input (3, H, W); inverse of hu_to_unit."""
    hu = unit.reshape(unit.shape[-2:]) * (HU_MAX - HU_MIN) + HU_MIN
    return normalize_ct(hu)
