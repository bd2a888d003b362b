"""Read one source into an axial, LPS-oriented voxel array with its geometry.

Every volume is reoriented with SimpleITK's DICOMOrient to "LPS" (identity direction), so that
whatever the file's direction matrix, array axis 0 runs inferior -> superior (axial slices),
axis 1 anterior -> posterior (image rows, top = anterior) and axis 2 patient right -> left
(image columns, image left = patient right: the radiological convention). Reorientation only
permutes and flips axes; no voxel is interpolated, so every stored slice is an original slice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from meddinov3.curate.sources import Source

MODALITY_TAG = "0008|0060"
IMAGE_TYPE_TAG = "0008|0008"


class UnreadableSource(Exception):
    """The source cannot be turned into an axial volume; the message is the skip reason."""


@dataclass
class Volume:
    voxels: np.ndarray  # (Z, Y, X), HU, native dtype of the file
    spacing_xyz: tuple[float, float, float] | None  # mm after reorientation; None if unknown
    z_mm: list[float] | None  # superior coordinate of each slice (LPS z); None if unknown
    modality: str = ""  # DICOM Modality when known
    precurated: bool = False  # slices already at corpus geometry (.npy input)
    notes: dict = field(default_factory=dict)
    # Keeps the SimpleITK image alive while ``voxels`` is a view into its buffer.
    owner: object = None


def read_sitk_image(source: Source):
    """The source's image, whole and finite, and the DICOM tags curation looks at."""
    from meddinov3.images import ImageFileError, read_image
    from meddinov3.images.dicom import DicomSeries, read_dicom_series

    try:
        if source.kind == "dicom":
            series = DicomSeries(Path(source.path), source.series_uid, source.files, source.unreadable)
            return read_dicom_series(series, (MODALITY_TAG, IMAGE_TYPE_TAG))
        return read_image(source.path), {}
    except ImageFileError as error:
        raise UnreadableSource(error.problem) from None


def read_image_volume(source: Source) -> Volume:
    import SimpleITK as sitk

    image, tags = read_sitk_image(source)
    if "LOCALIZER" in tags.get(IMAGE_TYPE_TAG, "").upper():
        raise UnreadableSource("DICOM series is a localizer (scout), not an axial volume")
    original_direction = image.GetDirection()
    image = sitk.DICOMOrient(image, "LPS")
    spacing = tuple(float(s) for s in image.GetSpacing())
    origin_z = image.GetOrigin()[2]
    step_z = image.GetDirection()[8] * spacing[2]
    n_slices = image.GetSize()[2]
    return Volume(
        voxels=sitk.GetArrayViewFromImage(image),
        spacing_xyz=spacing,
        z_mm=[round(origin_z + k * step_z, 4) for k in range(n_slices)],
        modality=tags.get(MODALITY_TAG, ""),
        notes={
            "source_direction": [round(d, 6) for d in original_direction],
            "oblique": not np.allclose(image.GetDirection(), np.eye(3).ravel(), atol=1e-3),
        },
        owner=image,
    )


def read_npy_slices(source: Source, size: int) -> Volume:
    """A .npy of HU already at corpus geometry: one (size, size) slice or a (N, size, size) stack."""
    try:
        array = np.load(source.path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as error:
        raise UnreadableSource(f"cannot read .npy: {error}") from error
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[1:] != (size, size):
        raise UnreadableSource(
            f"pre-curated .npy must be ({size}, {size}) or (N, {size}, {size}); got {array.shape}"
        )
    if array.dtype.kind not in "iuf":
        raise UnreadableSource(f"pre-curated .npy has non-numeric dtype {array.dtype}")
    problem = non_finite_voxels(array)
    if problem:
        raise UnreadableSource(problem)
    return Volume(array, None, None, precurated=True)


def non_finite_voxels(array: np.ndarray, slices: int = 64) -> str | None:
    """How many voxels of `array` (a memory map, read a block of slices at a time) are NaN or
    infinite, as a message; None when all are finite. Every voxel is checked: a sample would
    miss a bad row. The words are those of `meddinov3.images` for image files."""
    if array.dtype.kind != "f":
        return None
    bad = sum(int(np.count_nonzero(~np.isfinite(array[i : i + slices]))) for i in range(0, len(array), slices))
    return f"{bad} of {array.size} voxels are NaN or infinite" if bad else None


def read_volume(source: Source, size: int) -> Volume:
    if source.kind == "npy":
        return read_npy_slices(source, size)
    return read_image_volume(source)
