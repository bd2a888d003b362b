"""Copy one release file into the nnU-Net dataset, checking it on the way.

Images are copied byte for byte (a `.nii` is gzip-compressed on the fly, which is the same
NIfTI inside a `.nii.gz`), so no intensity or header is ever touched. Labels are read once to
check their values against the release's label set; an integer label map is copied as it is,
a float one with whole-number values (some releases store labels as float) is rewritten as
uint8 with the same geometry.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np

from meddinov3.convert.errors import ConversionError
from meddinov3.images import ImageFileError, check_image_file, read_header, read_image
from meddinov3.io import atomic_write

NIFTI_ENDING = ".nii.gz"
# Physical extents may differ by rounding in headers written by different tools.
_GEOMETRY_TOLERANCE = 1e-3


def copy_image(source: Path, target: Path) -> None:
    """`source` (.nii.gz or .nii), checked whole and finite, as a .nii.gz at `target`, atomically."""
    check_image_file(source)
    name = source.name.lower()
    if name.endswith(".nii.gz"):
        atomic_write(target, lambda tmp: shutil.copyfile(source, tmp))
    elif name.endswith(".nii"):
        atomic_write(target, lambda tmp: _gzip_file(source, Path(tmp)))
    else:
        raise ConversionError(f"{source}: expected a NIfTI file (.nii or .nii.gz)")


def _gzip_file(source: Path, target: Path) -> None:
    # Level 1: these files are rewritten once and read many times; speed matters more than size.
    with open(source, "rb") as src, gzip.open(target, "wb", compresslevel=1) as dst:
        shutil.copyfileobj(src, dst, length=1 << 22)


def check_same_grid(image: Path, label: Path) -> None:
    """The label must have the image's voxel grid (size and spacing)."""
    try:
        img, lab = read_header(image), read_header(label)
    except ImageFileError as error:
        raise ConversionError(str(error)) from None
    if img.size != lab.size:
        raise ConversionError(f"{label}: size {lab.size} differs from its image {image.name} {img.size}")
    if not np.allclose(img.spacing, lab.spacing, rtol=_GEOMETRY_TOLERANCE, atol=_GEOMETRY_TOLERANCE):
        raise ConversionError(
            f"{label}: spacing {lab.spacing} differs from its image {image.name} {img.spacing}"
        )


def copy_label(source: Path, target: Path, allowed: frozenset[int]) -> None:
    """Check the label values of `source` and write it to `target` (.nii.gz), atomically."""
    import SimpleITK as sitk

    label = read_image(source)
    values = sitk.GetArrayViewFromImage(label)
    is_integer = np.issubdtype(values.dtype, np.integer)
    if not is_integer and not np.array_equal(values, np.round(values)):
        raise ConversionError(f"{source}: label values are not whole numbers (pixel type {values.dtype})")
    present = _present_values(values)
    unknown = sorted(present - allowed)
    if unknown:
        raise ConversionError(
            f"{source}: label value(s) {unknown} are not in this release's label set {sorted(allowed)}"
        )
    if is_integer and source.name.lower().endswith(NIFTI_ENDING):
        atomic_write(target, lambda tmp: shutil.copyfile(source, tmp))
    elif is_integer and source.name.lower().endswith(".nii"):
        atomic_write(target, lambda tmp: _gzip_file(source, Path(tmp)))
    else:
        atomic_write(target, lambda tmp: _write_uint8_nifti(label, Path(tmp)))


def _write_uint8_nifti(label, target: Path) -> None:
    import SimpleITK as sitk

    # SimpleITK picks the file format from the name, so it writes to a .nii.gz name beside `target`.
    named = target.with_name(target.name + NIFTI_ENDING)
    try:
        sitk.WriteImage(sitk.Cast(label, sitk.sitkUInt8), str(named), True)
        named.replace(target)
    finally:
        named.unlink(missing_ok=True)


def _present_values(values: np.ndarray) -> set[int]:
    flat = np.asarray(values).ravel()
    if flat.size == 0:
        return set()
    low = int(flat.min())
    if low < 0:
        return {int(v) for v in np.unique(flat)}
    return {int(v) for v in np.flatnonzero(np.bincount(flat.astype(np.int64)))}
