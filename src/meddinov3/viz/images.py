"""Read one axial CT slice (in HU) from .npy, NIfTI / any SimpleITK volume, or DICOM."""

from __future__ import annotations

from pathlib import Path

import numpy as np

BUNDLED_SLICE = Path(__file__).resolve().parent.parent / "assets" / "ct_slice_1866889.npy"


def read_ct_slice(path: str | Path | None = None, index: int | None = None) -> np.ndarray:
    """A 2D float32 HU array. Volumes give axial slice `index` (default: the middle one).

    Without a path, the real CT slice bundled with the package (a CT-3M slice, 256 x 256).
    """
    path = Path(path) if path is not None else BUNDLED_SLICE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.suffix == ".npy":
        array = np.load(path, allow_pickle=False)
    else:
        array = _read_with_simpleitk(path)
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 3:
        index = array.shape[0] // 2 if index is None else index
        if not 0 <= index < array.shape[0]:
            raise ValueError(f"{path}: slice {index} out of range (volume has {array.shape[0]} slices)")
        array = array[index]
    if array.ndim != 2:
        raise ValueError(f"{path}: expected a 2D slice or a 3D volume, got shape {array.shape}")
    return array


def _read_with_simpleitk(path: Path) -> np.ndarray:
    import SimpleITK as sitk

    try:
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            files = reader.GetGDCMSeriesFileNames(str(path))
            if not files:
                raise ValueError(f"{path}: folder holds no DICOM series")
            reader.SetFileNames(files)
            image = reader.Execute()
        else:
            image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise ValueError(f"{path}: cannot read the image: {err}") from None
    # Axial slices of a volume in a fixed orientation, whatever the file's direction matrix.
    if image.GetDimension() == 3:
        image = sitk.DICOMOrient(image, "LPS")
    return sitk.GetArrayFromImage(image)
