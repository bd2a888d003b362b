"""The one way every command reads an image, a label map or a DICOM series: whole and finite.

What SimpleITK and GDCM do without a word, and what is refused here, naming the file:
- a NIfTI file whose data ends early (a cut-off .nii.gz stream, a short .nii) is read with the
  missing voxels set to 0: every NIfTI file is checked against its header first, the gzip
  stream decompressed to its end-of-stream marker (with its checksum);
- NaN and infinite voxels are kept, and become 0 or garbage further on;
- an image with more axes than a volume (4D) goes on to fail deep inside a job;
- a DICOM file GDCM cannot parse is left out of its series, which is then read a slice short
  with a wrong slice spacing.
MetaImage and NRRD files with short data make SimpleITK raise by itself; that error is passed on.
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

if TYPE_CHECKING:
    import SimpleITK as sitk

NIFTI_ENDINGS = (".nii.gz", ".nii")
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK_BYTES = 1 << 24
# File names a DICOM file may have: its own suffixes, none, or a UID-like numeric one (1.2.840...).
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
_DICOM_PREAMBLE = (128, b"DICM")
POSITION_TAG = "0020|0032"
# Slice gaps may differ by rounding in the stored positions; a missing slice doubles one.
UNEVEN_SLICE_TOLERANCE = 0.1


class ImageFileError(InputError):
    """An image file (or DICOM series) that cannot be used as it is."""

    def __init__(self, path: str | os.PathLike, problem: str):
        # Both in args, so that the error survives pickling between worker processes.
        super().__init__(str(path), problem)
        self.path, self.problem = str(path), problem

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
    header says, and floating-point voxels finite (SimpleITK reads NaN and infinity in NIfTI as 0)."""
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
    try:
        image = nibabel.load(path)
    except Exception as error:  # noqa: BLE001 - nibabel raises many kinds on a damaged header
        return f"not a readable NIfTI file ({error})"
    header = image.header
    voxels = int(np.prod(header.get_data_shape(), dtype=np.int64))
    # The image keeps the offset on its data proxy (its copy of the header says 0).
    expected = int(image.dataobj.offset) + voxels * header.get_data_dtype().itemsize
    if size < expected:
        return (
            f"truncated: the header describes {expected} bytes of header and voxels, the file holds {size}"
            " (cut off while copying or downloading?)"
        )
    if header.get_data_dtype().kind in "fc":
        return non_finite_problem(np.asarray(image.dataobj.get_unscaled()))
    return None


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
    if is_nifti(path):
        problem = nifti_problem(path)
        if problem:
            raise ImageFileError(path, problem)
    return path


def read_image(path: str | os.PathLike, dimensions: Sequence[int] = (3,)) -> sitk.Image:
    """A whole, finite, single-valued image of one of `dimensions` (a 4D file whose fourth
    axis has length 1 counts as 3D); ImageFileError naming the file otherwise."""
    import SimpleITK as sitk

    path = check_image_file(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise ImageFileError(path, f"cannot read it as an image: {itk_message(error)}") from None
    return checked_image(image, path, dimensions)


def checked_image(image: sitk.Image, source: str | os.PathLike, dimensions: Sequence[int] = (3,)) -> sitk.Image:
    """`image` with trailing length-1 axes dropped, after the checks `read_image` promises."""
    components = image.GetNumberOfComponentsPerPixel()
    if components != 1:
        raise ImageFileError(source, f"{components} values per voxel (a colour or vector image); expected one")
    image = _without_trailing_singletons(image, max(dimensions))
    if image.GetDimension() not in dimensions:
        expected = " or ".join(f"{d}D" for d in dimensions)
        raise ImageFileError(
            source, f"a {image.GetDimension()}D image of size {image.GetSize()}; expected a {expected} image"
        )
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
class DicomSeries:
    """One series of a folder, as GDCM sorts it, with the files of the folder it could not read."""

    folder: Path
    uid: str
    files: tuple[str, ...]
    unreadable: tuple[str, ...] = ()  # "<file name>: <reason>"

    @property
    def source(self) -> str:
        return f"{self.folder} (DICOM series {self.uid})"


def _may_be_dicom(path: Path) -> bool:
    if path.name.startswith(".") or not path.is_file():
        return False
    suffix = path.suffix.lower()
    if suffix in DICOM_SUFFIXES or suffix == "" or suffix[1:].isdigit():
        return True
    offset, magic = _DICOM_PREAMBLE
    with open(path, "rb") as stream:
        stream.seek(offset)
        return stream.read(len(magic)) == magic


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _holds_an_image(dataset) -> bool:
    file_meta = getattr(dataset, "file_meta", None)
    sop_class = (file_meta or {}).get("MediaStorageSOPClassUID") or dataset.get("SOPClassUID")
    return "PixelData" in dataset or "Rows" in dataset or "Image Storage" in getattr(sop_class, "name", "")


def _why_gdcm_dropped(path: Path) -> tuple[str, str] | None:
    """(series UID or "" when unknown, reason) for a file GDCM left out; None when it is a
    readable DICOM object without an image (a DICOMDIR, a report), which belongs to no series."""
    import pydicom

    try:
        dataset = pydicom.dcmread(path)
    except Exception as error:  # noqa: BLE001 - pydicom raises many kinds on damaged files
        return "", f"not a readable DICOM file ({_one_line(error)})"
    if not _holds_an_image(dataset):
        return None
    try:
        dataset.pixel_array
        reason = "GDCM cannot read it"
    except Exception as error:  # noqa: BLE001
        reason = f"its pixel data cannot be read ({_one_line(error)})"
    return str(dataset.get("SeriesInstanceUID", "")), reason


def find_dicom_series(folder: str | os.PathLike) -> list[DicomSeries]:
    """Every DICOM series directly inside `folder`. A file GDCM could not read is listed as
    unreadable in its series, or in every series of the folder when its own cannot be told."""
    import SimpleITK as sitk

    folder = Path(folder)
    series = {
        uid: tuple(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))
        for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    }
    if not series:
        return []
    listed = {os.path.abspath(f) for files in series.values() for f in files}
    dropped: dict[str, list[str]] = {}
    for path in sorted(folder.iterdir()):
        if os.path.abspath(path) in listed or not _may_be_dicom(path):
            continue
        found = _why_gdcm_dropped(path)
        if found is not None:
            uid, reason = found
            dropped.setdefault(uid if uid in series else "", []).append(f"{path.name}: {reason}")
    return [
        DicomSeries(folder, uid, files, tuple(dropped.get(uid, []) + dropped.get("", [])))
        for uid, files in series.items()
    ]


def read_dicom_series(series: DicomSeries, tags: Sequence[str] = ()) -> tuple[sitk.Image, dict[str, str]]:
    """The series as a whole, finite, evenly spaced 3D volume, and the `tags` of its first file."""
    import SimpleITK as sitk

    if series.unreadable:
        more = f" (and {len(series.unreadable) - 1} more)" if len(series.unreadable) > 1 else ""
        raise ImageFileError(
            series.source, f"unreadable file {series.unreadable[0]}{more}; without it the series misses a slice"
        )
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(series.files))
    reader.MetaDataDictionaryArrayUpdateOn()
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # ITK's uneven-spacing warning: refused below instead
    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise ImageFileError(series.source, f"cannot read the series: {itk_message(error)}") from None
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)
    image = checked_image(image, series.source)
    problem = _uneven_slices(reader, series, image.GetDirection()[2::3])
    if problem:
        raise ImageFileError(series.source, problem)
    values = {tag: reader.GetMetaData(0, tag).strip() if reader.HasMetaDataKey(0, tag) else "" for tag in tags}
    return image, values


def _uneven_slices(reader: sitk.ImageSeriesReader, series: DicomSeries, normal: Sequence[float]) -> str | None:
    """A missing slice file makes ITK space the whole series wrongly (it only warns): refuse it."""
    positions = []
    for index in range(len(series.files)):
        if not reader.HasMetaDataKey(index, POSITION_TAG):
            return None
        positions.append([float(v) for v in reader.GetMetaData(index, POSITION_TAG).split("\\")])
    gaps = np.abs(np.diff(np.asarray(positions) @ np.asarray(normal)))
    if len(gaps) < 2:
        return None
    typical = float(np.median(gaps))
    worst = int(np.argmax(np.abs(gaps - typical)))
    if typical > 0 and abs(gaps[worst] - typical) <= UNEVEN_SLICE_TOLERANCE * typical:
        return None
    first, second = (Path(series.files[i]).name for i in (worst, worst + 1))
    return (
        f"slices are not evenly spaced: {first} to {second} is {gaps[worst]:.3g} mm, the typical gap"
        f" {typical:.3g} mm (a slice missing, or two series in one?)"
    )
