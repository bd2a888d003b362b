"""CT intensity normalisation used by MedDINOv3 pretraining and its feature demos."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

HU_CLIP = (-1000.0, 1000.0)
# Mean and standard deviation of clipped HU over the CT-3M corpus (MedDINOv3 release).
CT3M_MEAN = 65.1084213256836
CT3M_STD = 178.01663208007812


def normalize_ct(hu: np.ndarray | Tensor, channels: int = 3) -> Tensor:
    """HU (..., H, W) -> clipped, standardised float32 tensor (..., channels, H, W)."""
    x = torch.as_tensor(np.asarray(hu) if not isinstance(hu, Tensor) else hu, dtype=torch.float32)
    x = (x.clamp(*HU_CLIP) - CT3M_MEAN) / CT3M_STD
    return x.unsqueeze(-3).expand(*x.shape[:-2], channels, *x.shape[-2:]).contiguous()
