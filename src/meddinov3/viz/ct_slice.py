"""Read one axial CT slice (in HU) from .npy, NIfTI / any SimpleITK volume, or DICOM."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from meddinov3.images import ImageFileError, non_finite_problem, read_image
from meddinov3.images.dicom import find_dicom_series, read_dicom_series

BUNDLED_SLICE = Path(__file__).resolve().parent.parent / "assets" / "ct_slice_1866889.npy"


def read_ct_slice(path: str | Path | None = None, index: int | None = None) -> np.ndarray:
    """A 2D float32 HU array. Volumes give axial slice `index` (default: the middle one).

    Without a path, the real CT slice bundled with the package (a CT-3M slice, 256 x 256).
    Files are read whole and finite (see `meddinov3.images`); errors name the file.
    """
    path = Path(path) if path is not None else BUNDLED_SLICE
    if not path.exists():
        raise ImageFileError(path, "no such file or folder")
    if path.suffix == ".npy":
        array = _read_npy(path)
    else:
        array = _read_with_simpleitk(path)
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 3:
        index = array.shape[0] // 2 if index is None else index
        if not 0 <= index < array.shape[0]:
            raise ImageFileError(path, f"slice {index} out of range (volume has {array.shape[0]} slices)")
        array = array[index]
    if array.ndim != 2:
        raise ImageFileError(path, f"expected a 2D slice or a 3D volume, got shape {array.shape}")
    return array


def _read_npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ImageFileError(path, f"not a readable .npy array ({error})") from None
    if array.dtype.kind not in "iuf":
        raise ImageFileError(path, f"holds {array.dtype} values; expected numbers (HU)")
    problem = non_finite_problem(array)
    if problem:
        raise ImageFileError(path, problem)
    return array


def _read_with_simpleitk(path: Path) -> np.ndarray:
    import SimpleITK as sitk

    if path.is_dir():
        series = find_dicom_series(path)
        if not series:
            raise ImageFileError(path, "folder holds no DICOM series")
        image, _ = read_dicom_series(series[0])
    else:
        image = read_image(path, dimensions=(2, 3))
    # Axial slices of a volume in a fixed orientation, whatever the file's direction matrix.
    if image.GetDimension() == 3:
        image = sitk.DICOMOrient(image, "LPS")
    return sitk.GetArrayFromImage(image)
