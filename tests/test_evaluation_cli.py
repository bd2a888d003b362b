"""`meddinov3 evaluate` on real NIfTI folders: pairing, IO, reports, errors, atomic outputs."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage
from typer.testing import CliRunner

from meddinov3.cli import app
from meddinov3.evaluation import EvaluationError, evaluate_case, evaluate_folder
from meddinov3.evaluation.labels import read_dataset_labels
from meddinov3.evaluation.report import PER_CASE_CSV, SUMMARY_JSON

SPACING_XYZ = (0.8, 0.7, 2.5)
SPACING_ZYX = (2.5, 0.7, 0.8)
ORIGIN_XYZ = (-120.5, 33.25, -7.0)
DIRECTION = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)  # y flipped: not identity
SHAPE_ZYX = (9, 22, 26)
LABEL_NAMES = {"background": 0, "liver": 1, "spleen": 2, "kidney": 3}


def write_labels(path: Path, array: np.ndarray, spacing=SPACING_XYZ, origin=ORIGIN_XYZ, direction=DIRECTION) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    sitk.WriteImage(image, str(path))


def reference_volume(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    volume = np.zeros(SHAPE_ZYX, np.uint8)
    zz, yy, xx = np.indices(SHAPE_ZYX)
    for label, radius in ((1, 6.0), (2, 4.0), (3, 3.0)):
        center = rng.uniform((2, 5, 5), (7, 17, 21))
        inside = ((zz - center[0]) * 2.5) ** 2 + ((yy - center[1]) * 0.7) ** 2 + ((xx - center[2]) * 0.8) ** 2
        volume[inside <= radius**2] = label
    return volume


def predicted_volume(reference: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 100)
    shifted = ndimage.shift(reference, (0, rng.integers(-1, 2), rng.integers(-1, 2)), order=0)
    return shifted.astype(np.uint8)


@pytest.fixture
def dataset(tmp_path: Path) -> dict[str, Path]:
    """Three cases; case_002's reference lacks the kidney, case_001's prediction misses the spleen."""
    ref_dir, pred_dir = tmp_path / "labelsTs", tmp_path / "predictions"
    ref_dir.mkdir()
    pred_dir.mkdir()
    for index in range(3):
        reference = reference_volume(index)
        prediction = predicted_volume(reference, index)
        if index == 1:
            prediction[prediction == 2] = 0
        if index == 2:
            reference[reference == 3] = 0
        write_labels(ref_dir / f"case_{index:03d}.nii.gz", reference)
        write_labels(pred_dir / f"case_{index:03d}.nii.gz", prediction)
    dataset_json = tmp_path / "dataset.json"
    dataset_json.write_text(json.dumps({"labels": LABEL_NAMES, "file_ending": ".nii.gz", "numTraining": 3}))
    return {"ref": ref_dir, "pred": pred_dir, "json": dataset_json, "root": tmp_path}


def run_cli(*args: str):
    return CliRunner().invoke(app, ["evaluate", *args])


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def expected_scores(dataset: dict[str, Path], case: str) -> dict[int, dict[str, float]]:
    """Scores straight from the arrays, with the spacing this test wrote (z, y, x order)."""
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(dataset["ref"] / f"{case}.nii.gz")))
    pred = sitk.GetArrayFromImage(sitk.ReadImage(str(dataset["pred"] / f"{case}.nii.gz")))
    return evaluate_case(pred, ref, SPACING_ZYX, [1, 2, 3])


def test_cli_writes_csv_and_summary_equal_to_evaluate_case(dataset):
    result = run_cli("--pred", str(dataset["pred"]), "--ref", str(dataset["ref"]),
                     "--dataset-json", str(dataset["json"]), "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "of label means" in result.stdout and "spleen" in result.stdout

    rows = read_csv(dataset["pred"] / PER_CASE_CSV)
    assert [(r["case"], r["label"], r["name"]) for r in rows] == [
        (f"case_{i:03d}", str(label), name)
        for i in range(3) for label, name in ((1, "liver"), (2, "spleen"), (3, "kidney"))
    ]
    for row in rows:
        expected = expected_scores(dataset, row["case"])[int(row["label"])]
        for metric in ("dice", "nsd", "hd95"):
            np.testing.assert_allclose(float(row[metric]), expected[metric], rtol=1e-12, equal_nan=True)
    kidney_002 = next(r for r in rows if r["case"] == "case_002" and r["label"] == "3")
    assert all(kidney_002[m] == "nan" for m in ("dice", "nsd", "hd95"))
    spleen_001 = next(r for r in rows if r["case"] == "case_001" and r["label"] == "2")
    assert (float(spleen_001["dice"]), float(spleen_001["nsd"]), spleen_001["hd95"]) == (0.0, 0.0, "nan")

    summary = json.loads((dataset["pred"] / SUMMARY_JSON).read_text(encoding="utf-8"))
    assert summary["n_cases"] == 3 and summary["protocol"]["tolerance_mm"] == 1.0
    label_means = []
    for label, name in ((1, "liver"), (2, "spleen"), (3, "kidney")):
        entry = summary["labels"][str(label)]
        assert entry["name"] == name
        for metric in ("dice", "nsd", "hd95"):
            values = np.array([float(r[metric]) for r in rows if r["label"] == str(label)])
            values = values[~np.isnan(values)]
            assert entry[metric]["n"] == values.size
            assert entry[metric]["mean"] == pytest.approx(values.mean(), rel=1e-12)
            if values.size > 1:
                assert entry[metric]["std"] == pytest.approx(values.std(ddof=1), rel=1e-12, abs=1e-15)
            else:
                assert entry[metric]["std"] is None
        label_means.append([entry[m]["mean"] for m in ("dice", "nsd", "hd95")])
    assert summary["labels"]["3"]["dice"]["n"] == 2  # kidney absent from case_002's reference
    assert summary["labels"]["2"]["hd95"]["n"] == 2  # spleen missed in case_001: HD95 NaN, skipped
    assert summary["labels"]["2"]["dice"]["n"] == 3  # ... but its DSC of 0 counts
    for index, metric in enumerate(("dice", "nsd", "hd95")):
        assert summary["mean_over_labels"][metric] == pytest.approx(np.mean([m[index] for m in label_means]))
    assert not list(dataset["pred"].glob(".*tmp"))


def test_table_prints_on_an_ascii_only_terminal(dataset):
    """With LC_ALL=C and no UTF-8 mode, stdout is ASCII: the command still finishes, '±' shown as '?'."""
    env = {"PATH": os.environ["PATH"], "LC_ALL": "C", "PYTHONUTF8": "0"}
    result = subprocess.run(
        [sys.executable, "-m", "meddinov3.cli", "evaluate", "--pred", str(dataset["pred"]), "--ref",
         str(dataset["ref"]), "--dataset-json", str(dataset["json"]), "--workers", "1"],
        env=env, capture_output=True, timeout=300,
    )
    stdout = result.stdout.decode("ascii")
    assert result.returncode == 0, result.stderr.decode("ascii", errors="replace")[-2000:]
    assert "spleen" in stdout and " ? " in stdout


def test_without_dataset_json_labels_come_from_the_images(dataset, tmp_path):
    out = tmp_path / "reports"
    report = evaluate_folder(dataset["pred"], dataset["ref"], workers=1, output_dir=out)
    assert sorted(report.summary["labels"]) == ["1", "2", "3"]
    assert report.summary["labels"]["1"]["name"] == "1"
    assert sorted(p.name for p in out.iterdir()) == [PER_CASE_CSV, SUMMARY_JSON]
    with_json = evaluate_folder(dataset["pred"], dataset["ref"], dataset["json"], workers=1, output_dir=tmp_path / "b")
    assert _rows_equal_nan(report.rows, [{**row, "name": str(row["label"])} for row in with_json.rows])


def _rows_equal_nan(first, second) -> bool:
    def normal(rows):
        return [{k: ("nan" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows]

    return normal(first) == normal(second)


def test_parallel_workers_give_the_same_reports(dataset, tmp_path):
    serial = evaluate_folder(dataset["pred"], dataset["ref"], dataset["json"], workers=1, output_dir=tmp_path / "a")
    parallel = evaluate_folder(dataset["pred"], dataset["ref"], dataset["json"], workers=2, output_dir=tmp_path / "b")
    assert (tmp_path / "a" / PER_CASE_CSV).read_text(encoding="utf-8") == (tmp_path / "b" / PER_CASE_CSV).read_text(encoding="utf-8")
    assert (tmp_path / "a" / SUMMARY_JSON).read_text(encoding="utf-8") == (tmp_path / "b" / SUMMARY_JSON).read_text(encoding="utf-8")
    assert _rows_equal_nan(serial.rows, parallel.rows)


def test_tolerance_option_changes_nsd_only(dataset, tmp_path):
    loose = evaluate_folder(dataset["pred"], dataset["ref"], dataset["json"], 5.0, workers=1, output_dir=tmp_path)
    strict = evaluate_folder(dataset["pred"], dataset["ref"], dataset["json"], 0.0, workers=1, output_dir=tmp_path)
    assert loose.summary["mean_over_labels"]["nsd"] > strict.summary["mean_over_labels"]["nsd"]
    assert loose.summary["mean_over_labels"]["dice"] == strict.summary["mean_over_labels"]["dice"]
    assert json.loads((tmp_path / SUMMARY_JSON).read_text(encoding="utf-8"))["protocol"]["tolerance_mm"] == 0.0


def assert_fails_naming(dataset, fragments: list[str], *extra: str) -> None:
    result = run_cli("--pred", str(dataset["pred"]), "--ref", str(dataset["ref"]), "--workers", "1", *extra)
    assert result.exit_code == 1, result.output
    message = " ".join(result.stderr.split())
    for fragment in fragments:
        assert fragment in message, message
    assert not any(p.suffix in (".csv", ".json", ".tmp") for p in dataset["pred"].iterdir())


def test_missing_prediction_names_the_case(dataset):
    (dataset["pred"] / "case_001.nii.gz").unlink()
    assert_fails_naming(dataset, ["case_001", "no prediction"])


@pytest.mark.parametrize(
    "geometry, fragment",
    [
        ({"spacing": (0.8, 0.7, 3.0)}, "spacing"),
        ({"origin": (-120.5, 33.25, -6.0)}, "origin"),
        ({"direction": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)}, "direction"),
    ],
)
def test_geometry_mismatch_names_the_case(dataset, geometry, fragment):
    prediction = sitk.GetArrayFromImage(sitk.ReadImage(str(dataset["pred"] / "case_002.nii.gz")))
    write_labels(dataset["pred"] / "case_002.nii.gz", prediction, **geometry)
    assert_fails_naming(dataset, ["case_002", fragment, "different grids"])


def test_shape_mismatch_names_the_case(dataset):
    write_labels(dataset["pred"] / "case_000.nii.gz", np.zeros((9, 22, 25), np.uint8))
    assert_fails_naming(dataset, ["case_000", "size"])


def test_label_outside_dataset_json_names_case_and_label(dataset):
    prediction = sitk.GetArrayFromImage(sitk.ReadImage(str(dataset["pred"] / "case_001.nii.gz")))
    prediction[0, 0, 0] = 9
    write_labels(dataset["pred"] / "case_001.nii.gz", prediction)
    assert_fails_naming(dataset, ["case_001", "[9]", "dataset.json"], "--dataset-json", str(dataset["json"]))


def test_unreadable_file_names_the_case(dataset):
    (dataset["ref"] / "case_002.nii.gz").write_bytes(b"this is not a NIfTI file")
    assert_fails_naming(dataset, ["case_002", "not a readable NIfTI file"])


def test_failed_rerun_marks_previous_outputs_stale(dataset):
    """A failed rerun leaves no report that passes for its own; the earlier ones are kept as *.stale."""
    assert run_cli("--pred", str(dataset["pred"]), "--ref", str(dataset["ref"]), "--workers", "1").exit_code == 0
    before = {name: (dataset["pred"] / name).read_bytes() for name in (PER_CASE_CSV, SUMMARY_JSON)}
    (dataset["pred"] / "case_000.nii.gz").write_bytes(b"broken")
    assert run_cli("--pred", str(dataset["pred"]), "--ref", str(dataset["ref"]), "--workers", "1").exit_code == 1
    assert not any((dataset["pred"] / name).exists() for name in before)
    assert {name: (dataset["pred"] / f"{name}.stale").read_bytes() for name in before} == before
    assert not list(dataset["pred"].glob(".*.tmp"))


def test_error_in_a_worker_process_names_the_case(dataset):
    (dataset["pred"] / "case_002.nii.gz").write_bytes(b"broken")
    with pytest.raises(EvaluationError, match="case_002"):
        evaluate_folder(dataset["pred"], dataset["ref"], workers=2)
    assert not (dataset["pred"] / SUMMARY_JSON).exists()


def test_float_labels_accepted_when_whole_numbers_refused_otherwise(dataset, tmp_path):
    prediction = sitk.GetArrayFromImage(sitk.ReadImage(str(dataset["pred"] / "case_000.nii.gz")))
    expected = expected_scores(dataset, "case_000")[1]
    write_labels(dataset["pred"] / "case_000.nii.gz", prediction.astype(np.float32))
    report = evaluate_folder(dataset["pred"], dataset["ref"], workers=1, output_dir=tmp_path)
    row = next(r for r in report.rows if r["case"] == "case_000" and r["label"] == 1)
    assert (row["dice"], row["nsd"], row["hd95"]) == (expected["dice"], expected["nsd"], expected["hd95"])
    write_labels(dataset["pred"] / "case_000.nii.gz", prediction.astype(np.float32) + 0.5)
    assert_fails_naming(dataset, ["case_000", "non-integer"])


def test_other_formats_pair_by_case_name_and_extra_predictions_are_reported(dataset, tmp_path):
    nrrd_dir = tmp_path / "nrrd_predictions"
    nrrd_dir.mkdir()
    for path in dataset["pred"].glob("*.nii.gz"):
        sitk.WriteImage(sitk.ReadImage(str(path)), str(nrrd_dir / path.name.replace(".nii.gz", ".nrrd")))
    write_labels(nrrd_dir / "case_999.nii.gz", reference_volume(9))
    (nrrd_dir / "plans.json").write_text("{}")
    result = run_cli("--pred", str(nrrd_dir), "--ref", str(dataset["ref"]), "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "case_999" in result.stderr
    nifti = evaluate_folder(dataset["pred"], dataset["ref"], workers=1, output_dir=tmp_path / "nifti")
    assert (nrrd_dir / PER_CASE_CSV).read_text(encoding="utf-8") == (tmp_path / "nifti" / PER_CASE_CSV).read_text(encoding="utf-8")
    assert nifti.unmatched_predictions == []


def test_dataset_json_layouts(tmp_path):
    v1 = tmp_path / "v1.json"
    v1.write_text(json.dumps({"labels": {"0": "background", "1": "liver", "2": "tumour"}}))
    assert read_dataset_labels(v1).scored == [1, 2]
    with_ignore = tmp_path / "ignore.json"
    with_ignore.write_text(json.dumps({"labels": {"background": 0, "organ": 1, "ignore": 2}}))
    labels = read_dataset_labels(with_ignore)
    assert labels.scored == [1] and labels.allowed_values == {0, 1, 2}
    regions = tmp_path / "regions.json"
    regions.write_text(json.dumps({"labels": {"background": 0, "whole": [1, 2], "core": 2}}))
    with pytest.raises(EvaluationError, match="region"):
        read_dataset_labels(regions)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(EvaluationError, match="broken.json"):
        read_dataset_labels(broken)


def test_missing_folder_and_empty_reference_folder(dataset, tmp_path):
    with pytest.raises(EvaluationError, match="does not exist"):
        evaluate_folder(tmp_path / "nowhere", dataset["ref"], workers=1)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EvaluationError, match="no reference images"):
        evaluate_folder(dataset["pred"], empty, workers=1)
