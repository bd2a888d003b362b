"""The one way every command reads an image, a label map or a DICOM series: whole, finite, and
with a geometry every reader agrees on.

What SimpleITK and GDCM do without a word, and what is refused here, naming the file:
- a NIfTI file whose data ends early (a cut-off .nii.gz stream, a short .nii) is read with the
  missing voxels set to 0: every NIfTI file is checked against its header first, the gzip
  stream decompressed to its end-of-stream marker (with its checksum); a short MetaImage or NRRD
  file is called truncated (SimpleITK says "No such file or directory"; see `data_length`);
- a NIfTI header whose pixdim is 0 or negative, whose qform and sform disagree, or whose sform
  SimpleITK does not follow is read with another geometry than the header's sform says, and a
  spacing no CT or MR scan has is taken as it is (see `geometry`);
- NaN and infinite voxels are kept, and become 0 or garbage further on;
- an image with more axes than a volume (4D) goes on to fail deep inside a job;
- a file name that is not valid UTF-8 aborts the process inside SimpleITK (see
  `meddinov3.filenames`).
A DICOM series is read in `meddinov3.images.dicom`, with the same checks.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from meddinov3.errors import InputError
from meddinov3.filenames import name_problem, shown
from meddinov3.images.data_length import data_length_problem
from meddinov3.images.geometry import (
    itk_reading_problem,
    nifti_geometry_problem,
    read_nifti_header,
    spacing_problem,
)

if TYPE_CHECKING:
    import SimpleITK as sitk

NIFTI_ENDINGS = (".nii.gz", ".nii")
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK_BYTES = 1 << 24


class ImageFileError(InputError):
    """An image file (or DICOM series) that cannot be used as it is."""

    def __init__(self, path: str | os.PathLike, problem: str):
        # Both in args, so that the error survives pickling between worker processes.
        super().__init__(shown(path), problem)
        self.path, self.problem = shown(path), problem

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


def itk_message(error: BaseException) -> str:
    """The line of an ITK exception that names the problem (the others are source locations)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_ENDINGS)


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as stream:
        return stream.read(2) == _GZIP_MAGIC


def _decompressed_size(path: Path) -> int:
    """Bytes in the gzip stream, read to its end-of-stream marker and checksum."""
    total = 0
    with gzip.open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK_BYTES):
            total += len(chunk)
    return total


def nifti_problem(path: Path) -> str | None:
    """Why the NIfTI file at `path` cannot be trusted, or None: its data must be as long as its
    header says, its geometry consistent (see `geometry`), and floating-point voxels finite
    (SimpleITK reads NaN and infinity in NIfTI as 0)."""
    import nibabel

    if _is_gzip(path):
        try:
            size = _decompressed_size(path)
        except EOFError:
            return "truncated: the compressed stream ends early (cut off while copying or downloading?)"
        except (gzip.BadGzipFile, zlib.error, OSError) as error:
            return f"corrupt compressed data ({error})"
    else:
        size = path.stat().st_size
    header = read_nifti_header(path)
    if header is None:
        return "not a readable NIfTI file (no NIfTI-1 or NIfTI-2 header)"
    voxels = int(np.prod(header.get_data_shape(), dtype=np.int64))
    # The data of a single file starts after the header and its 4-byte extension flag at the least.
    offset = max(int(header["vox_offset"]), int(header["sizeof_hdr"]) + 4)
    expected = offset + voxels * header.get_data_dtype().itemsize
    if size < expected:
        return (
            f"truncated: the header describes {expected} bytes of header and voxels, the file holds {size}"
            " (cut off while copying or downloading?)"
        )
    problem = nifti_geometry_problem(header)
    if problem or header.get_data_dtype().kind not in "fc":
        return problem
    try:
        image = nibabel.load(path)
    except Exception as error:  # noqa: BLE001 - nibabel raises many kinds on a damaged header
        return f"not a readable NIfTI file ({error})"
    return non_finite_problem(np.asarray(image.dataobj.get_unscaled()))


def non_finite_problem(values: np.ndarray) -> str | None:
    """How many of `values` are NaN or infinite, as a message; None when all are finite."""
    if values.dtype.kind not in "fc":
        return None
    bad = values.size - int(np.count_nonzero(np.isfinite(values)))
    return f"{bad} of {values.size} voxels are NaN or infinite" if bad else None


def check_image_file(path: str | os.PathLike) -> Path:
    """`path` as a Path, after checking that it is a file and, for NIfTI, whole and finite."""
    path = Path(path)
    if not path.exists():
        raise ImageFileError(path, "no such file")
    if not path.is_file():
        raise ImageFileError(path, "is a folder, not an image file")
    problem = name_problem(path) or (nifti_problem(path) if is_nifti(path) else data_length_problem(path))
    if problem:
        raise ImageFileError(path, problem)
    return path


def read_image(path: str | os.PathLike, dimensions: Sequence[int] = (3,)) -> sitk.Image:
    """A whole, finite, single-valued image of one of `dimensions` (a 4D file whose fourth
    axis has length 1 counts as 3D); ImageFileError naming the file otherwise."""
    import SimpleITK as sitk

    path = check_image_file(path)
    shown_warnings = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # ITK's geometry warnings: refused below instead
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise ImageFileError(path, f"cannot read it as an image: {itk_message(error)}") from None
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown_warnings)
    if is_nifti(path):
        problem = itk_reading_problem(read_nifti_header(path), image)
        if problem:
            raise ImageFileError(path, problem)
    return checked_image(image, path, dimensions)


def checked_image(image: sitk.Image, source: str | os.PathLike, dimensions: Sequence[int] = (3,)) -> sitk.Image:
    """`image` with trailing length-1 axes dropped, after the checks `read_image` promises of
    any image: one value per voxel, the dimensions, a plausible spacing, finite voxels."""
    components = image.GetNumberOfComponentsPerPixel()
    if components != 1:
        raise ImageFileError(source, f"{components} values per voxel (a colour or vector image); expected one")
    image = _without_trailing_singletons(image, max(dimensions))
    if image.GetDimension() not in dimensions:
        expected = " or ".join(f"{d}D" for d in dimensions)
        raise ImageFileError(
            source, f"a {image.GetDimension()}D image of size {image.GetSize()}; expected a {expected} image"
        )
    problem = spacing_problem(image.GetSpacing())
    if problem:
        raise ImageFileError(source, problem)
    _check_finite(image, source)
    return image


def _without_trailing_singletons(image: sitk.Image, dimension: int) -> sitk.Image:
    import SimpleITK as sitk

    size = list(image.GetSize())
    if len(size) <= dimension or any(s != 1 for s in size[dimension:]):
        return image
    return sitk.Extract(image, size[:dimension] + [0] * (len(size) - dimension), [0] * len(size))


def _check_finite(image: sitk.Image, source: str | os.PathLike) -> None:
    import SimpleITK as sitk

    problem = non_finite_problem(sitk.GetArrayViewFromImage(image))
    if problem:
        raise ImageFileError(source, problem)


@dataclass(frozen=True)
class ImageHeader:
    """What an image file's header says, in SimpleITK's (x, y, z) order; no voxel is read."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        """The size in numpy's (z, y, x) order."""
        return tuple(reversed(self.size))


def read_header(path: str | os.PathLike) -> ImageHeader:
    """Size and spacing of an image from its header alone (a quick look, not a check of the data)."""
    import SimpleITK as sitk

    problem = name_problem(path)
    if problem:
        raise ImageFileError(path, problem)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise ImageFileError(path, f"cannot read the image header ({itk_message(error)})") from None
    return ImageHeader(tuple(reader.GetSize()), tuple(reader.GetSpacing()))
