"""Read a label image with its geometry, and check that a prediction lies on its reference's grid.

Arrays come back in (z, y, x) order with spacing reversed to match; messages quote geometry in
the file's own (x, y, z) order, as ITK-SNAP and 3D Slicer show it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from meddinov3.evaluation.errors import EvaluationError
from meddinov3.images import ImageFileError, read_image

# Tolerances for "the same grid": NIfTI stores spacing and origin as float32, so a prediction
# written from the reference's geometry can differ by float32 rounding (~1e-5 mm at 100 mm),
# never by 0.1 micrometre more than that.
SPACING_ATOL_MM = 1e-4
ORIGIN_ATOL_MM = 1e-4
DIRECTION_ATOL = 1e-5
RELATIVE_TOL = 1e-6


@dataclass(frozen=True)
class Geometry:
    """Grid of an image in ITK's (x, y, z) order."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    def differences(self, other: Geometry) -> list[str]:
        """Human-readable differences from `other` (empty when both are the same grid)."""
        found = []
        if self.size != other.size:
            found.append(f"size (x, y, z) {self.size} vs {other.size}")
            return found
        checks = (
            ("spacing (x, y, z)", self.spacing, other.spacing, SPACING_ATOL_MM),
            ("origin (x, y, z)", self.origin, other.origin, ORIGIN_ATOL_MM),
            ("direction", self.direction, other.direction, DIRECTION_ATOL),
        )
        for name, mine, theirs, atol in checks:
            if not np.allclose(mine, theirs, rtol=RELATIVE_TOL, atol=atol):
                found.append(f"{name} {_fmt(mine)} vs {_fmt(theirs)}")
        return found


@dataclass(frozen=True)
class LabelImage:
    array: np.ndarray  # (z, y, x), non-negative integers
    geometry: Geometry

    @property
    def spacing_zyx(self) -> tuple[float, ...]:
        return tuple(reversed(self.geometry.spacing))


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"


def read_label_image(path: Path, case: str) -> LabelImage:
    """Read one label image (whole and finite: see `meddinov3.images`); errors name the case and the file."""
    import SimpleITK as sitk

    try:
        image = read_image(path, dimensions=(2, 3))
    except ImageFileError as error:
        raise EvaluationError(f"case {case}: {error}") from None
    geometry = Geometry(
        size=tuple(image.GetSize()),
        spacing=tuple(image.GetSpacing()),
        origin=tuple(image.GetOrigin()),
        direction=tuple(image.GetDirection()),
    )
    return LabelImage(array=as_label_array(sitk.GetArrayFromImage(image), path, case), geometry=geometry)


def as_label_array(array: np.ndarray, path: Path, case: str) -> np.ndarray:
    """Integer labels >= 0; float images are accepted when every value is a whole number."""
    if np.issubdtype(array.dtype, np.floating):
        if not np.array_equal(array, np.round(array)):
            raise EvaluationError(f"case {case}: {path} holds non-integer values; expected a label map")
        array = array.astype(np.int32)
    elif not np.issubdtype(array.dtype, np.integer):
        raise EvaluationError(f"case {case}: {path} has pixel type {array.dtype}; expected integer labels")
    if array.size and np.issubdtype(array.dtype, np.signedinteger) and array.min() < 0:
        raise EvaluationError(f"case {case}: {path} holds negative values; labels must be >= 0")
    return array


def check_same_grid(pred: LabelImage, ref: LabelImage, pred_path: Path, ref_path: Path, case: str) -> None:
    differences = pred.geometry.differences(ref.geometry)
    if differences:
        raise EvaluationError(
            f"case {case}: prediction {pred_path.name} and reference {ref_path.name} are on different"
            f" grids: {'; '.join(differences)}"
        )
