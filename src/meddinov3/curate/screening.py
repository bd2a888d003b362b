"""Decide whether a volume is a CT in Hounsfield units, and say why not.

A CT of a patient always holds air (about -1000 HU) in the field of view: around the body, in
the lungs or in the bowel. MRI, PET or intensity-normalised exports have no such negative
values. The thresholds are deliberately loose: they reject other modalities and broken
scaling, not unusual CTs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from meddinov3.curate.reading import Volume

MIN_SLICE_SIDE = 16


@dataclass(frozen=True)
class HuScreen:
    # A voxel counts as air below this value; true air is about -1000 HU.
    air_below_hu: float = -500.0
    # Fraction of (sampled) voxels that must be air.
    min_air_fraction: float = 1e-3
    # Fraction that must be soft tissue / fluid / fat, [-200, 300] HU.
    min_tissue_fraction: float = 1e-2
    # Sampling stride per axis: statistics on 1/64 of the voxels are plenty and 64x cheaper.
    stride: int = 4


def intensity_sample(voxels: np.ndarray, stride: int) -> np.ndarray:
    return np.asarray(voxels[:, ::stride, ::stride], dtype=np.float32)


def hu_problem(voxels: np.ndarray, screen: HuScreen) -> str | None:
    sample = intensity_sample(voxels, screen.stride)
    if not np.isfinite(sample).all():
        return "contains NaN or infinite voxels"
    low, high = float(sample.min()), float(sample.max())
    if high - low < 1.0:
        return f"constant image (value {low:g})"
    air = float(np.mean(sample < screen.air_below_hu))
    if low >= -100.0:
        return (
            f"not CT in HU: no value below -100 (range {low:g}..{high:g}); "
            "looks like MRI/PET or normalised intensities"
        )
    if air < screen.min_air_fraction:
        return f"not CT in HU: only {air:.2%} of voxels are air (< {screen.air_below_hu:g} HU)"
    tissue = float(np.mean((sample >= -200.0) & (sample <= 300.0)))
    if tissue < screen.min_tissue_fraction:
        return f"not CT in HU: only {tissue:.2%} of voxels in the soft-tissue range -200..300 HU"
    return None


def geometry_problem(volume: Volume) -> str | None:
    z, y, x = volume.voxels.shape
    if z < 1 or min(y, x) < MIN_SLICE_SIDE:
        return f"slices too small to be axial CT images: {x} x {y} voxels"
    if volume.spacing_xyz is not None:
        sx, sy, sz = volume.spacing_xyz
        if not all(0.0 < s <= 50.0 for s in (sx, sy)):
            return f"implausible in-plane spacing {sx:g} x {sy:g} mm"
    return None


def reject_reason(volume: Volume, check_ct: bool, screen: HuScreen = HuScreen()) -> str | None:
    """None when the volume should be curated, else the reason it is skipped."""
    if volume.modality and volume.modality.upper() != "CT":
        return f"DICOM Modality is {volume.modality}, not CT"
    problem = geometry_problem(volume)
    if problem or not check_ct:
        return problem
    return hu_problem(volume.voxels, screen)
