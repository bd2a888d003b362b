"""`meddinov3 convert` on small replicas of each public release's own folder layout.

Each test builds the release layout with tiny real NIfTI files, converts it, and checks the
nnU-Net dataset (file names, dataset.json, voxel data) and nnU-Net's own integrity check.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from meddinov3.cli import app
from meddinov3.convert import ConversionError, convert_release

SHAPE = (12, 10, 4)  # x, y, z as nibabel stores it
SPACING = (0.8, 0.8, 3.0)


def write_nifti(path: Path, array: np.ndarray, dtype=np.int16, spacing=SPACING) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    affine = np.diag([*spacing, 1.0])
    nib.save(nib.Nifti1Image(array.astype(dtype), affine), str(path))
    return path


def image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1000, 1000, SHAPE)


def label(seed: int, max_value: int) -> np.ndarray:
    values = np.random.default_rng(seed).integers(0, max_value + 1, SHAPE)
    values.flat[: max_value + 1] = np.arange(max_value + 1)  # every class present at least once
    return values


def make_amos(root: Path) -> Path:
    release = root / "amos22"
    labels = {str(i): name for i, name in enumerate(["background", "spleen", "right kidney", "left kidney",
              "gall bladder", "esophagus", "liver", "stomach", "arota", "postcava", "pancreas",
              "right adrenal gland", "left adrenal gland", "duodenum", "bladder", "prostate/uterus"])}
    release.mkdir(parents=True)
    (release / "dataset.json").write_text(json.dumps({"labels": labels, "licence": "CC BY 4.0"}))
    for split, numbers in (("Tr", (1, 507)), ("Va", (2, 588))):
        for n in numbers:
            write_nifti(release / f"images{split}" / f"amos_{n:04d}.nii.gz", image(n))
            write_nifti(release / f"labels{split}" / f"amos_{n:04d}.nii.gz", label(n, 15), np.uint8)
    for n in (3, 550):
        write_nifti(release / "imagesTs" / f"amos_{n:04d}.nii.gz", image(n))
    return release


def make_btcv(root: Path) -> Path:
    release = root / "Abdomen" / "RawData"
    for n in (1, 2, 3):
        write_nifti(release / "Training" / "img" / f"img{n:04d}.nii.gz", image(n))
        # BTCV ships some label maps as float: the converter must store them as integers.
        write_nifti(release / "Training" / "label" / f"label{n:04d}.nii.gz", label(n, 13), np.float32)
    write_nifti(release / "Testing" / "img" / "img0061.nii.gz", image(61))
    return root / "Abdomen"


def make_kits(root: Path) -> Path:
    release = root / "kits23"
    for n in (0, 1, 2):
        write_nifti(release / "dataset" / f"case_{n:05d}" / "imaging.nii.gz", image(n))
        write_nifti(release / "dataset" / f"case_{n:05d}" / "segmentation.nii.gz", label(n, 3), np.uint8)
    return release


def make_lits(root: Path) -> Path:
    release = root / "LITS17"
    for batch, numbers in (("Training Batch 1", (0, 1)), ("Training Batch 2", (28,))):
        for n in numbers:
            write_nifti(release / batch / f"volume-{n}.nii", image(n))
            write_nifti(release / batch / f"segmentation-{n}.nii", label(n, 2), np.uint8)
    write_nifti(release / "Test" / "test-volume-0.nii", image(100))
    return release


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def case_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def verify_with_nnunet(folder: Path) -> None:
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    verify_dataset_integrity(str(folder), num_processes=1)


def test_amos22_all_scans_mixed_modality(tmp_path):
    out = convert_release("amos22", make_amos(tmp_path), 11, tmp_path / "raw")
    assert out.name == "Dataset011_AMOS22"
    assert case_files(out / "imagesTr") == [f"amos_{n:04d}_0000.nii.gz" for n in (1, 2, 507, 588)]
    assert case_files(out / "labelsTr") == [f"amos_{n:04d}.nii.gz" for n in (1, 2, 507, 588)]
    assert case_files(out / "imagesTs") == ["amos_0003_0000.nii.gz", "amos_0550_0000.nii.gz"]
    info = read_json(out / "dataset.json")
    assert info["numTraining"] == 4 and info["file_ending"] == ".nii.gz"
    # CT and MRI together: per-image z-score, never nnU-Net's HU-based CT normalisation.
    assert info["channel_names"] == {"0": "CT_or_MRI"}
    assert len(info["labels"]) == 16 and info["labels"]["aorta"] == 8 and info["labels"]["prostate/uterus"] == 15
    verify_with_nnunet(out)


@pytest.mark.parametrize("modality, numbers, channel", [("ct", (1, 2), "CT"), ("mri", (507, 588), "MRI")])
def test_amos22_ct_mri_split(tmp_path, modality, numbers, channel):
    out = convert_release("amos22", make_amos(tmp_path), 12, tmp_path / "raw", modality=modality)
    assert case_files(out / "labelsTr") == [f"amos_{n:04d}.nii.gz" for n in numbers]
    assert read_json(out / "dataset.json")["channel_names"] == {"0": channel}
    tests = {"ct": ["amos_0003_0000.nii.gz"], "mri": ["amos_0550_0000.nii.gz"]}[modality]
    assert case_files(out / "imagesTs") == tests


def test_amos22_image_bytes_are_copied_unchanged(tmp_path):
    release = make_amos(tmp_path)
    out = convert_release("amos22", release, 13, tmp_path / "raw", include_test=False)
    source = release / "imagesTr" / "amos_0001.nii.gz"
    assert (out / "imagesTr" / "amos_0001_0000.nii.gz").read_bytes() == source.read_bytes()
    assert not (out / "imagesTs").exists()


def test_btcv_float_labels_become_integers(tmp_path):
    out = convert_release("btcv", make_btcv(tmp_path), 14, tmp_path / "raw")
    assert case_files(out / "labelsTr") == ["btcv_0001.nii.gz", "btcv_0002.nii.gz", "btcv_0003.nii.gz"]
    assert case_files(out / "imagesTs") == ["btcv_0061_0000.nii.gz"]
    info = read_json(out / "dataset.json")
    assert info["channel_names"] == {"0": "CT"}
    assert list(info["labels"]) == ["background", "spleen", "right kidney", "left kidney", "gallbladder",
                                    "esophagus", "liver", "stomach", "aorta", "inferior vena cava",
                                    "portal and splenic veins", "pancreas", "right adrenal gland",
                                    "left adrenal gland"]
    converted = nib.load(str(out / "labelsTr" / "btcv_0002.nii.gz"))
    assert converted.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(converted.dataobj), label(2, 13))
    np.testing.assert_allclose(converted.affine, np.diag([*SPACING, 1.0]))
    verify_with_nnunet(out)


def test_kits23_plain_labels(tmp_path):
    out = convert_release("kits23", make_kits(tmp_path), 15, tmp_path / "raw")
    assert case_files(out / "imagesTr") == [f"case_{n:05d}_0000.nii.gz" for n in range(3)]
    info = read_json(out / "dataset.json")
    assert info["labels"] == {"background": 0, "kidney": 1, "tumor": 2, "cyst": 3}
    assert info["overwrite_image_reader_writer"] == "NibabelIOWithReorient"
    verify_with_nnunet(out)


def test_lits_training_batches_and_uncompressed_files(tmp_path):
    release = make_lits(tmp_path)
    out = convert_release("lits", release, 16, tmp_path / "raw")
    assert case_files(out / "labelsTr") == ["lits_000.nii.gz", "lits_001.nii.gz", "lits_028.nii.gz"]
    assert case_files(out / "imagesTs") == ["lits_test_000_0000.nii.gz"]
    assert read_json(out / "dataset.json")["labels"] == {"background": 0, "liver": 1, "tumor": 2}
    converted = nib.load(str(out / "imagesTr" / "lits_028_0000.nii.gz"))
    np.testing.assert_array_equal(np.asarray(converted.dataobj), image(28))
    verify_with_nnunet(out)


def test_label_outside_the_release_label_set_names_the_file(tmp_path):
    release = make_lits(tmp_path)
    bad = release / "Training Batch 1" / "segmentation-1.nii"
    write_nifti(bad, np.full(SHAPE, 3), np.uint8)
    with pytest.raises(ConversionError, match=r"segmentation-1\.nii.*\[3\]"):
        convert_release("lits", release, 17, tmp_path / "raw")


def test_label_on_another_grid_is_refused(tmp_path):
    release = make_kits(tmp_path)
    bad = release / "dataset" / "case_00001" / "segmentation.nii.gz"
    write_nifti(bad, np.zeros((12, 10, 5)), np.uint8)
    with pytest.raises(ConversionError, match=r"case_00001.*segmentation\.nii\.gz: size"):
        convert_release("kits23", release, 18, tmp_path / "raw")


def test_image_without_label_is_refused(tmp_path):
    release = make_btcv(tmp_path)
    (release / "RawData" / "Training" / "label" / "label0003.nii.gz").unlink()
    with pytest.raises(ConversionError, match=r"no label for image number\(s\) \[3\]"):
        convert_release("btcv", release, 19, tmp_path / "raw")


def test_wrong_folder_says_what_was_expected(tmp_path):
    with pytest.raises(ConversionError, match="case_XXXXX"):
        convert_release("kits23", make_lits(tmp_path), 20, tmp_path / "raw")


def test_dataset_id_taken_by_another_dataset_is_refused(tmp_path):
    convert_release("kits23", make_kits(tmp_path), 24, tmp_path / "raw")
    with pytest.raises(ConversionError, match="id 24 is already used by Dataset024_KiTS23"):
        convert_release("lits", make_lits(tmp_path), 24, tmp_path / "raw")


def test_rerun_resumes_and_keeps_finished_cases(tmp_path):
    release = make_kits(tmp_path)
    out = convert_release("kits23", release, 21, tmp_path / "raw")
    kept = out / "imagesTr" / "case_00000_0000.nii.gz"
    os.utime(kept, (1_000_000, 1_000_000))
    (out / "labelsTr" / "case_00002.nii.gz").unlink()
    (out / "dataset.json").unlink()
    convert_release("kits23", release, 21, tmp_path / "raw")
    assert kept.stat().st_mtime == 1_000_000
    assert (out / "labelsTr" / "case_00002.nii.gz").is_file() and (out / "dataset.json").is_file()


def test_cli_converts_into_nnunet_raw(tmp_path, monkeypatch):
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    result = CliRunner().invoke(app, ["convert", "amos22", str(make_amos(tmp_path)), "22", "--modality", "ct"])
    assert result.exit_code == 0, result.output
    assert read_json(tmp_path / "raw" / "Dataset022_AMOS22CT" / "dataset.json")["numTraining"] == 2


def test_cli_rejects_modality_for_other_releases(tmp_path):
    result = CliRunner().invoke(app, ["convert", "btcv", str(make_btcv(tmp_path)), "23", "-o", str(tmp_path),
                                      "--modality", "ct"])
    assert result.exit_code != 0 and "amos22 only" in result.output
