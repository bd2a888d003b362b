"""Read one source into an axial, LPS-oriented voxel array with its geometry.

Every volume is reoriented with SimpleITK's DICOMOrient to "LPS" (identity direction), so that
whatever the file's direction matrix, array axis 0 runs inferior -> superior (axial slices),
axis 1 anterior -> posterior (image rows, top = anterior) and axis 2 patient right -> left
(image columns, image left = patient right: the radiological convention). Reorientation only
permutes and flips axes; no voxel is interpolated, so every stored slice is an original slice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


def itk_message(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    # ITK messages begin with file/line noise; the last non-empty line names the problem.
    return lines[-1] if lines else type(error).__name__


def read_sitk_image(source: Source):
    import SimpleITK as sitk

    try:
        if source.kind == "dicom":
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(list(source.files))
            reader.MetaDataDictionaryArrayUpdateOn()
            image = reader.Execute()
            tags = {
                tag: reader.GetMetaData(0, tag).strip() if reader.HasMetaDataKey(0, tag) else ""
                for tag in (MODALITY_TAG, IMAGE_TYPE_TAG)
            }
            return image, tags
        return sitk.ReadImage(source.path), {}
    except RuntimeError as error:
        raise UnreadableSource(f"cannot read: {itk_message(error)}") from error


def squeeze_to_3d(image):
    """Accept a 4D image only when its extra axis has length 1 (common in NIfTI exports)."""
    import SimpleITK as sitk

    if image.GetNumberOfComponentsPerPixel() != 1:
        raise UnreadableSource(
            f"not a scalar volume: {image.GetNumberOfComponentsPerPixel()} components per voxel"
        )
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        size = list(image.GetSize())
        size[3] = 0
        image = sitk.Extract(image, size, [0, 0, 0, 0])
    if image.GetDimension() != 3:
        raise UnreadableSource(f"not a 3D volume: {image.GetDimension()}D, size {image.GetSize()}")
    return image


def read_image_volume(source: Source) -> Volume:
    import SimpleITK as sitk

    image, tags = read_sitk_image(source)
    image = squeeze_to_3d(image)
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
    return Volume(array, None, None, precurated=True)


def read_volume(source: Source, size: int) -> Volume:
    if source.kind == "npy":
        return read_npy_slices(source, size)
    return read_image_volume(source)
