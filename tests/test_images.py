"""The one reading path for images (meddinov3.images) on real files: what it accepts and refuses."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from meddinov3.images import ImageFileError, read_image
from meddinov3.images.dicom import find_dicom_series, read_dicom_series
from test_nnunet_end_to_end import _write_dicom_series

SERIES_UID = "1.2.826.0.1.3680043.2.1125.1.987"


def volume(path: Path, array: np.ndarray) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.7, 0.7, 3.0))
    sitk.WriteImage(image, str(path), path.name.endswith(".gz"))
    return path


def ramp(dtype=np.int16) -> np.ndarray:
    return np.arange(6 * 20 * 24, dtype=np.int64).reshape(6, 20, 24).astype(dtype)


def test_whole_files_read_as_written(tmp_path):
    for name in ("v.nii.gz", "v.nii", "v.mha", "v.nrrd"):
        image = read_image(volume(tmp_path / name, ramp()))
        assert np.array_equal(sitk.GetArrayFromImage(image), ramp())
        assert np.allclose(image.GetSpacing(), (0.7, 0.7, 3.0))  # NIfTI stores float32


def test_a_stream_one_byte_short_is_caught(tmp_path):
    """A gzip stream that ends properly but holds one voxel byte too few: the size check, not gzip, sees it."""
    whole = volume(tmp_path / "v.nii.gz", ramp())
    short = tmp_path / "short.nii.gz"
    short.write_bytes(gzip.compress(gzip.decompress(whole.read_bytes())[:-1]))
    # 352 header bytes + 2880 int16 voxels = 6112
    with pytest.raises(ImageFileError, match="the header describes 6112 bytes of header and voxels, the file holds 6111"):
        read_image(short)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("name", ["v.nii.gz", "v.nii", "v.mha"])
def test_non_finite_voxels_are_refused_in_every_format(tmp_path, value, name):
    array = ramp(np.float32)
    array[2, 3, 4] = value
    path = volume(tmp_path / name, array)
    with pytest.raises(ImageFileError) as refused:
        read_image(path)
    assert str(refused.value) == f"{path}: 1 of 2880 voxels are NaN or infinite"


def test_a_fourth_axis_of_length_one_is_dropped_a_longer_one_refused(tmp_path):
    single = tmp_path / "t1.nii.gz"
    sitk.WriteImage(sitk.JoinSeries([sitk.GetImageFromArray(ramp())]), str(single))
    assert read_image(single).GetSize() == (24, 20, 6)
    double = tmp_path / "t2.nii.gz"
    sitk.WriteImage(sitk.JoinSeries([sitk.GetImageFromArray(ramp())] * 2), str(double))
    with pytest.raises(ImageFileError, match=r"a 4D image of size \(24, 20, 6, 2\); expected a 3D image"):
        read_image(double)


def dicom_series(folder: Path) -> None:
    image = sitk.GetImageFromArray(ramp())
    image.SetSpacing((0.7, 0.7, 3.0))
    _write_dicom_series(image, folder)


def test_a_missing_slice_file_is_refused_naming_the_gap(tmp_path):
    """No file is unreadable, one is simply absent: ITK would only warn and space the series wrongly."""
    dicom_series(tmp_path / "series")
    (tmp_path / "series" / "slice002.dcm").unlink()
    (series,) = find_dicom_series(tmp_path / "series")
    assert series.unreadable == ()
    with pytest.raises(ImageFileError, match="slice001.dcm to slice003.dcm is 6 mm, the typical gap 3 mm"):
        read_dicom_series(series)


def test_files_without_an_image_beside_a_series_are_not_counted_as_unreadable(tmp_path):
    """A report (a DICOM object without pixel data) and a text file belong to no series."""
    dicom_series(tmp_path / "series")
    (tmp_path / "series" / "README.txt").write_text("scanner export", encoding="utf-8")
    report = pydicom.Dataset()
    report.file_meta = FileMetaDataset()
    report.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    report.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    report.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    report.SOPClassUID = report.file_meta.MediaStorageSOPClassUID
    report.SOPInstanceUID = report.file_meta.MediaStorageSOPInstanceUID
    report.SeriesInstanceUID = generate_uid()
    report.Modality = "SR"
    report.save_as(tmp_path / "series" / "report.dcm", enforce_file_format=True)

    (series,) = find_dicom_series(tmp_path / "series")
    assert series.uid == SERIES_UID and series.unreadable == ()
    image, tags = read_dicom_series(series, ["0008|0060"])
    assert np.array_equal(sitk.GetArrayFromImage(image), ramp()) and tags == {"0008|0060": "CT"}


def test_a_damaged_file_is_named_in_its_series(tmp_path):
    dicom_series(tmp_path / "series")
    damaged = tmp_path / "series" / "slice004.dcm"
    damaged.write_bytes(damaged.read_bytes()[:-100])
    (series,) = find_dicom_series(tmp_path / "series")
    assert len(series.files) == 5 and series.unreadable == (
        "slice004.dcm: its pixel data cannot be read (The number of bytes of pixel data is less than expected"
        " (860 vs 960 bytes) - the dataset may be corrupted, have an invalid group 0028 element value, or the"
        " transfer syntax may be incorrect)",
    )
    with pytest.raises(ImageFileError, match="unreadable file slice004.dcm: .*; without it the series misses a slice"):
        read_dicom_series(series)
