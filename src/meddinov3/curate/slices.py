"""Turn an oriented volume into int16 slices at the corpus geometry.

Exact meaning of the paper's "resampled to an in-plane spacing of 0.45 mm and 0.45 mm, and then
resized to uniform resolution 256 x 256", per axial slice (z is never resampled: every
original slice is kept once):

1. Resample in-plane to ``spacing_mm`` (0.45 mm) in both x and y, covering the whole field of
   view: n' = round(n * s / 0.45) pixels per axis, bilinear on pixel centres (anti-aliased
   where the source is finer than 0.45 mm). This makes pixels square in millimetres.
2. Pad the shorter axis symmetrically with air (-1000 HU) to a square, so that step 3 keeps
   the anatomy's aspect ratio; for the usual square CT field of view this pads nothing.
3. Resize (never crop) the square to ``size`` x ``size`` (256) with anti-aliased bilinear
   interpolation. The stored pixel spacing is therefore field-of-view / 256 (about 1.4-2 mm for
   body CT), recorded per volume in the manifest.
4. Round to the nearest integer and clip to the int16 range; values stay in HU. Clipped values
   are counted (`Clipping`): the manifest and the log say how many per source, and their range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

INT16_MIN, INT16_MAX = -32768, 32767


@dataclass(frozen=True)
class SliceGeometry:
    resampled_shape: tuple[int, int]  # (rows, cols) after step 1
    resampled_spacing: tuple[float, float]  # (x, y) mm after step 1, ~spacing_mm
    square_side: int  # after step 2
    pad_rows: tuple[int, int]  # (top, bottom) added in step 2
    pad_cols: tuple[int, int]  # (left, right)
    output_spacing: tuple[float, float]  # (x, y) mm of a stored pixel


@dataclass
class Clipping:
    """The values of one source that storing as int16 clipped: how many, and the range they spanned."""

    below: int = 0
    above: int = 0
    low: float = math.inf
    high: float = -math.inf

    def count(self, values: torch.Tensor) -> None:
        """Count the values of a rounded batch outside the int16 range (before they are clipped)."""
        below, above = int((values < INT16_MIN).sum()), int((values > INT16_MAX).sum())
        if below or above:
            self.below, self.above = self.below + below, self.above + above
            self.low, self.high = min(self.low, float(values.min())), max(self.high, float(values.max()))

    @property
    def voxels(self) -> int:
        return self.below + self.above

    def record(self) -> dict | None:
        """For the manifest; None when nothing was clipped."""
        if not self.voxels:
            return None
        return {"voxels": self.voxels, "below": self.below, "above": self.above, "range": [self.low, self.high]}

    def describe(self) -> str:
        return (
            f"{self.voxels} voxel(s) outside the int16 range [{INT16_MIN}, {INT16_MAX}] clipped"
            f" ({self.below} below, {self.above} above; values {self.low:g} to {self.high:g})"
        )


def plan_geometry(
    shape_yx: tuple[int, int], spacing_xy: tuple[float, float], spacing_mm: float, size: int
) -> SliceGeometry:
    rows, cols = shape_yx
    sx, sy = spacing_xy
    new_rows = max(1, round(rows * sy / spacing_mm))
    new_cols = max(1, round(cols * sx / spacing_mm))
    # Rounding to whole pixels moves the spacing off 0.45 by at most half a pixel over the FOV.
    res_sx, res_sy = cols * sx / new_cols, rows * sy / new_rows
    side = max(new_rows, new_cols)
    pad_r, pad_c = side - new_rows, side - new_cols
    return SliceGeometry(
        resampled_shape=(new_rows, new_cols),
        resampled_spacing=(res_sx, res_sy),
        square_side=side,
        pad_rows=(pad_r // 2, pad_r - pad_r // 2),
        pad_cols=(pad_c // 2, pad_c - pad_c // 2),
        output_spacing=(res_sx * side / size, res_sy * side / size),
    )


def resize(batch: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    if tuple(batch.shape[-2:]) == tuple(shape):
        return batch
    # The anti-aliasing filter only matters when shrinking; for enlarging it equals plain
    # bilinear (to float rounding) at almost twice the cost.
    shrinking = any(new < old for new, old in zip(shape, batch.shape[-2:]))
    return F.interpolate(
        batch, size=shape, mode="bilinear", align_corners=False, antialias=shrinking
    )


def to_int16(batch: torch.Tensor, clipping: Clipping) -> np.ndarray:
    batch = batch.round()
    clipping.count(batch)
    return batch.clamp_(INT16_MIN, INT16_MAX).to(torch.int16).numpy()


def chunk_to_slices(
    chunk: np.ndarray, geometry: SliceGeometry, size: int, pad_value: float, clipping: Clipping
) -> np.ndarray:
    # np.array copies: the chunk may be a read-only view of a SimpleITK buffer.
    batch = torch.from_numpy(np.array(chunk, dtype=np.float32)).unsqueeze(1)
    batch = resize(batch, geometry.resampled_shape)
    batch = F.pad(batch, (*geometry.pad_cols, *geometry.pad_rows), value=pad_value)
    batch = resize(batch, (size, size))
    return to_int16(batch.squeeze(1), clipping)


def write_slices(
    voxels: np.ndarray,
    spacing_xy: tuple[float, float] | None,
    out: np.ndarray,
    spacing_mm: float,
    size: int,
    pad_value: float,
    chunk_slices: int,
) -> tuple[SliceGeometry | None, Clipping]:
    """Fill ``out`` (Z, size, size) int16 from ``voxels`` (Z, Y, X) HU (finite: the readers check),
    ``chunk_slices`` at a time.

    ``spacing_xy=None`` marks slices already at corpus geometry: they are only rounded to int16.
    Returns the geometry used (None for pre-curated slices) and what was clipped.
    """
    geometry = None
    clipping = Clipping()
    if spacing_xy is not None:
        geometry = plan_geometry(voxels.shape[1:], spacing_xy, spacing_mm, size)
    for start in range(0, voxels.shape[0], chunk_slices):
        chunk = voxels[start : start + chunk_slices]
        if geometry is None:
            stored = to_int16(torch.from_numpy(np.array(chunk, dtype=np.float32)), clipping)
        else:
            stored = chunk_to_slices(chunk, geometry, size, pad_value, clipping)
        out[start : start + len(chunk)] = stored
    return geometry, clipping
