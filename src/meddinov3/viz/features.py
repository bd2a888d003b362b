"""Dense-feature pictures of a backbone: PCA maps and patch-similarity maps (paper Fig. 1 and 3)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from meddinov3.backbone import DinoVisionTransformer
from meddinov3.intensity import normalize_ct

BODY_HU = -500.0


def resize_slice(hu: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of a HU slice to size x size."""
    t = torch.as_tensor(hu, dtype=torch.float32)[None, None]
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[0, 0].numpy()


@torch.inference_mode()
def patch_features(model: DinoVisionTransformer, hu: np.ndarray) -> Tensor:
    """Normed last-block patch tokens of a HU slice, as an (h, w, C) grid."""
    p = model.patch_size
    if hu.shape[0] % p or hu.shape[1] % p:
        raise ValueError(f"slice size {hu.shape} must be a multiple of the patch size {p}")
    device = next(model.parameters()).device
    x = normalize_ct(hu)[None].to(device)
    tokens = model.forward_features(x)["x_norm_patchtokens"][0].float().cpu()
    return tokens.reshape(hu.shape[0] // p, hu.shape[1] // p, -1)


def foreground_patches(hu: np.ndarray, patch_size: int) -> np.ndarray:
    """Patches mostly inside the body (HU above -500): where the maps are worth looking at."""
    h, w = hu.shape[0] // patch_size, hu.shape[1] // patch_size
    body = (hu > BODY_HU).reshape(h, patch_size, w, patch_size).mean(axis=(1, 3))
    return body >= 0.5


def pca_rgb(features: Tensor, mask: np.ndarray) -> np.ndarray:
    """First three principal components of the foreground features as RGB in [0, 1]."""
    h, w, c = features.shape
    flat = features.reshape(-1, c)
    keep = torch.as_tensor(mask.reshape(-1))
    if keep.sum() < 3:
        keep = torch.ones_like(keep)
    fg = flat[keep]
    mean = fg.mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(fg - mean, full_matrices=False)
    proj = (flat - mean) @ v[:3].T
    lo, hi = proj[keep].min(0).values, proj[keep].max(0).values
    rgb = ((proj - lo) / (hi - lo).clamp_min(1e-8)).clamp(0, 1)
    rgb[~keep] = 0
    return rgb.reshape(h, w, 3).numpy()


def similarity_map(features: Tensor, query: tuple[int, int]) -> np.ndarray:
    """Cosine similarity of every patch to the patch at grid position `query` (row, col)."""
    f = F.normalize(features, dim=-1)
    return (f @ f[query]).numpy()


def default_queries(mask: np.ndarray, count: int = 3) -> list[tuple[int, int]]:
    """Spread query patches over the foreground: its centre, then points along its long axis."""
    rows, cols = np.nonzero(mask) if mask.any() else np.nonzero(np.ones_like(mask))
    order = np.argsort(cols * mask.shape[0] + rows)
    picks = np.linspace(0, len(order) - 1, count + 2)[1:-1].round().astype(int)
    return [(int(rows[order[i]]), int(cols[order[i]])) for i in picks]
