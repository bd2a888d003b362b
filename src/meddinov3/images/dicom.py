"""Reading a DICOM series whole, finite and evenly spaced, the way `meddinov3.images` reads a file.

What GDCM does without a word, and what is refused here, naming the file: a DICOM file GDCM
cannot parse is left out of its series, which is then read a slice short with a wrong slice
spacing; a missing slice file makes ITK space the whole series wrongly (it only warns).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from meddinov3.filenames import name_problem
from meddinov3.images import ImageFileError, checked_image, itk_message

if TYPE_CHECKING:
    import SimpleITK as sitk

# File names a DICOM file may have: its own suffixes, none, or a UID-like numeric one (1.2.840...).
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
_DICOM_PREAMBLE = (128, b"DICM")
POSITION_TAG = "0020|0032"
# Slice gaps may differ by rounding in the stored positions; a missing slice doubles one.
UNEVEN_SLICE_TOLERANCE = 0.1


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
    # GDCM lists the folder itself: every name in it must be one SimpleITK can take.
    for path in (folder, *sorted(folder.iterdir())):
        problem = name_problem(path)
        if problem:
            raise ImageFileError(path, problem)
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
