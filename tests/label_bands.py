"""Synthetic CT whose images encode the labels as HU bands, and a real DINOv3 ViT whose features
read those bands: the reference point of the probe tests (`meddinov3 probe`, the periodic probe of
pretraining).

The images give label k the band -600 + 150 k HU (noise sd 20 HU, so bands never overlap), over
the organ shapes of `meddinov3 synth`. `band_counting_vit` is a `DinoVisionTransformer` with set
weights that sees only the image: its patch tokens hold, for each edge between two bands, how many
of the patch's pixels lie above it, so a linear head reads each label's share of the patch from
them. Saved like any backbone, it loads through `load_backbone`; its random twin (same
architecture, random weights) has no such features.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from meddinov3.backbone import DinoVisionTransformer, build_backbone
from meddinov3.intensity import CT3M_MEAN, CT3M_STD
from meddinov3.synth.dataset import SynthSpec, write_dataset
from meddinov3.synth.tissues import LABELS

N_CLASSES = len(LABELS)
BAND_HU = 150.0
EDGES_HU = [-600.0 + BAND_HU * (k + 0.5) for k in range(N_CLASSES - 1)]


def band_hu(label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return -600.0 + BAND_HU * label + rng.normal(0.0, 20.0, label.shape)


def write_band_coded_dataset(folder: Path, shape_zyx: tuple[int, int, int], cases: int, test_cases: int) -> Path:
    """`meddinov3 synth` cases with each image repainted from its label map as HU bands."""
    write_dataset(folder, SynthSpec(cases=cases, test_cases=test_cases, seed=0, shape_zyx=shape_zyx))
    rng = np.random.default_rng(0)
    for label_path in sorted(folder.glob("labels*/*.nii.gz")):
        images = "imagesTr" if label_path.parent.name == "labelsTr" else "imagesTs"
        label = sitk.ReadImage(str(label_path))
        image = sitk.GetImageFromArray(band_hu(sitk.GetArrayFromImage(label), rng).astype(np.int16))
        image.CopyInformation(label)
        sitk.WriteImage(image, str(folder / images / label_path.name.replace(".nii.gz", "_0000.nii.gz")))
    return folder


@torch.no_grad()
def band_counting_vit(patch_size: int = 2, embed_dim: int = 32, constant: float = 1000.0, sharpness: float = 50.0,
                      ramp: float = 4.0) -> DinoVisionTransformer:
    """One block; attention off (LayerScale 0); the MLP counts pixels above each band edge.

    Channels come in +/- pairs (pixel values, a large constant, the counts), so every token has
    mean 0 and each LayerNorm divides all channels by nearly the same number (the constant
    dominates): the MLP compares a pixel with an edge as a ratio to the constant, which no
    normalisation changes. A pixel counts as a ramp from 0 to 1 within +-ramp/sharpness of the
    edge (GELU(z + ramp) - GELU(z - ramp), over 2 ramp), i.e. within ~15 HU of it.
    """
    pixels, n_edges = patch_size**2, len(EDGES_HU)
    constant_channel, count_channel = 2 * pixels, 2 * pixels + 2
    model = build_backbone("vitb16", embed_dim=embed_dim, num_heads=2, depth=1, patch_size=patch_size,
                           n_storage_tokens=0, ffn_ratio=2 * pixels * n_edges / embed_dim).eval()
    for parameter in model.parameters():
        parameter.zero_()
    conv = model.patch_embed.proj
    for p in range(pixels):
        conv.weight[2 * p, 0, p // patch_size, p % patch_size] = 1.0
        conv.weight[2 * p + 1, 0, p // patch_size, p % patch_size] = -1.0
    conv.bias[constant_channel], conv.bias[constant_channel + 1] = constant, -constant
    block = model.blocks[0]
    block.norm2.weight.fill_(1.0)
    block.ls2.gamma.fill_(1.0)
    model.norm.weight.fill_(1.0)
    # After norm2 every channel is divided by s ~ constant * sqrt(2 / embed_dim).
    gain = sharpness * constant * math.sqrt(2 / embed_dim)
    fc1, fc2 = block.mlp.fc1, block.mlp.fc2
    for k, edge_hu in enumerate(EDGES_HU):
        edge = (edge_hu - CT3M_MEAN) / CT3M_STD
        for p in range(pixels):
            for side, offset in ((1.0, ramp), (-1.0, -ramp)):
                unit = 2 * (k * pixels + p) + (side < 0)
                fc1.weight[unit, 2 * p] = gain
                fc1.weight[unit, constant_channel] = -gain * edge / constant
                fc1.bias[unit] = offset
                fc2.weight[count_channel + 2 * k, unit] = side / (2 * ramp)
                fc2.weight[count_channel + 2 * k + 1, unit] = -side / (2 * ramp)
    return model
