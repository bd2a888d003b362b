"""`meddinov3 features`: PCA and similarity maps on real inputs."""

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from conftest import FIXTURES
from meddinov3.backbone import load_backbone
from meddinov3.cli import app
from meddinov3.viz.features import foreground_patches, patch_features, pca_rgb, similarity_map
from meddinov3.viz.ct_slice import BUNDLED_SLICE, read_ct_slice

runner = CliRunner()


def _png_ok(path):
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_default_uses_bundled_real_slice_and_says_weights_are_random(tmp_path):
    result = runner.invoke(app, ["features", "--size", "128", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "RANDOM" in result.output
    assert _png_ok(tmp_path / "pca.png") and _png_ok(tmp_path / "similarity.png")


def test_nifti_volume_with_weights(tmp_path):
    volume = np.full((5, 64, 64), -1000, np.int16)
    volume[:, 16:48, 12:52] = 40
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing((0.8, 0.8, 3.0))
    sitk.WriteImage(image, str(tmp_path / "ct.nii.gz"))
    args = ["features", "--weights", str(FIXTURES / "dinov3_tiny_official.pth"), "--image", str(tmp_path / "ct.nii.gz"),
            "--slice", "2", "--size", "64", "--out", str(tmp_path / "out")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "RANDOM" not in result.output
    assert _png_ok(tmp_path / "out" / "pca.png")


def test_size_must_be_multiple_of_16(tmp_path):
    result = runner.invoke(app, ["features", "--size", "100", "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert "multiple of 16" in result.output


def test_bundled_slice_is_real_ct():
    hu = read_ct_slice()
    assert BUNDLED_SLICE.exists() and hu.shape == (256, 256)
    assert hu.min() == pytest.approx(-1000) and 500 < hu.max() < 1100


def test_bundled_slice_is_the_file_its_provenance_describes():
    """The asset's origin, licence and checksum are recorded beside it and in NOTICE; a changed
    file would make that record false."""
    record = (BUNDLED_SLICE.parent / "README.md").read_text(encoding="utf-8")
    recorded = re.search(r"sha256 \| `([0-9a-f]{64})`", record).group(1)
    assert hashlib.sha256(BUNDLED_SLICE.read_bytes()).hexdigest() == recorded
    assert "https://github.com/ricklisz/MedDINOv3" in record and "Apache License, Version 2.0" in record
    notice = (Path(__file__).resolve().parents[1] / "NOTICE").read_text(encoding="utf-8")
    assert BUNDLED_SLICE.name in notice


def test_pca_masks_background_and_similarity_peaks_at_query():
    model = load_backbone(FIXTURES / "dinov3_tiny_official.pth")
    hu = read_ct_slice()
    feats = patch_features(model, hu)
    mask = foreground_patches(hu, 16)
    assert feats.shape == (16, 16, 48) and 0.2 < mask.mean() < 0.9
    rgb = pca_rgb(feats, mask)
    assert rgb.shape == (16, 16, 3) and np.all(rgb[~mask] == 0) and rgb[mask].max() == pytest.approx(1.0)
    sim = similarity_map(feats, (8, 8))
    assert sim[8, 8] == pytest.approx(1.0, abs=1e-5) and sim.max() <= 1 + 1e-5


def _write_dicom_series(volume: np.ndarray, folder, spacing=(0.7, 0.7, 2.5)):
    folder.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series = "1.2.826.0.1.3680043.2.1125.1"
    for z in range(volume.shape[0]):
        image = sitk.GetImageFromArray(volume[z])
        image.SetSpacing(spacing[:2])
        for tag, value in {
            "0008|0060": "CT",
            "0020|000e": series,
            "0020|000d": series + ".0",
            "0020|0013": str(z + 1),
            "0020|0032": f"0\\0\\{z * spacing[2]}",
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0018|0050": str(spacing[2]),
            "0028|1052": "0",
            "0028|1053": "1",
        }.items():
            image.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{z:03d}.dcm"))
        writer.Execute(image)


def test_dicom_series_folder_is_read_as_axial_volume(tmp_path):
    volume = np.full((4, 48, 48), -1000, np.int16)
    for z in range(4):
        volume[z, 8:40, 8:40] = 100 * z
    _write_dicom_series(volume, tmp_path / "series")
    for z in range(4):
        assert np.array_equal(read_ct_slice(tmp_path / "series", z), volume[z].astype(np.float32))
    result = runner.invoke(app, ["features", "--image", str(tmp_path / "series"), "--size", "64", "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
