"""Bad inputs a realistic user hands every command, through the CLI as a user runs it.

Each test gives one class of bad input (a cut-off .nii.gz or .nii, NaN voxels, a 4D image, an
unusable output folder, a missing or mis-spaced training image, a bad checkpoint, the reference
folder as prediction folder, a corrupt DICOM file, a torn nnU-Net checkpoint) and checks the
three things a user sees: one `error:` line naming the file or case, the exit code, and which
files are left. All files are real (SimpleITK-, nibabel- and pydicom-readable), the model is a
real nnU-Net training of the shared baseline workspace.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from baseline_workspace import CONFIGURATION, DATASET_ID, baseline_workspace, train_quickly
from conftest import FIXTURES
from test_nnunet_end_to_end import _write_dicom_series

SPACING = (0.8, 0.8, 2.5)


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "meddinov3.cli", *map(str, args)], capture_output=True, encoding="utf-8",
        errors="replace", env=env,
    )


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one line a failed command prints (stderr holds nothing else), after exit code 1."""
    assert result.returncode == 1, f"exit {result.returncode}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-4000:]
    return lines[0]


def write_volume(path: Path, array: np.ndarray, spacing=SPACING) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), path.name.endswith(".gz"))
    return path


def cut_in_half(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def ct_volume(seed: int = 0, shape=(8, 64, 64)) -> np.ndarray:
    """Air around a soft-tissue body with a bright disc: passes curate's HU screening."""
    rng = np.random.default_rng(seed)
    volume = np.full(shape, -1000, np.int16)
    zz, yy, xx = np.indices(shape)
    body = (yy - shape[1] / 2) ** 2 + (xx - shape[2] / 2) ** 2 < (shape[1] * 0.4) ** 2
    volume[body] = 40 + rng.integers(-20, 20, size=int(body.sum()))
    volume[body & ((yy - shape[1] / 2) ** 2 + (xx - shape[2] / 3) ** 2 < 36)] = 700
    return volume


def label_volume(shape=(8, 64, 64)) -> np.ndarray:
    labels = np.zeros(shape, np.uint8)
    labels[2:6, 20:40, 20:40] = 1
    labels[3:5, 42:50, 30:44] = 2
    return labels


@contextmanager
def unwritable_folder(path: Path):
    """A folder this process cannot write into: read-only mode, and immutable for root (whom mode
    bits do not stop)."""
    path.mkdir()
    path.chmod(0o555)
    immutable = os.geteuid() == 0
    if immutable and subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        path.chmod(0o755)
        pytest.skip("running as root without chattr: no folder here is unwritable")
    try:
        yield path
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(0o755)


# --- evaluate ---------------------------------------------------------------------------------


@pytest.fixture
def scored(tmp_path: Path) -> dict[str, Path]:
    """Two cases, prediction = reference shifted by one voxel."""
    folders = {"ref": tmp_path / "ref", "pred": tmp_path / "pred"}
    for index in range(2):
        labels = label_volume()
        write_volume(folders["ref"] / f"case_{index}.nii.gz", labels)
        write_volume(folders["pred"] / f"case_{index}.nii.gz", np.roll(labels, 1, axis=2))
    return folders


def reports_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("evaluation_"))


@pytest.mark.parametrize("ending", [".nii.gz", ".nii"])
def test_evaluate_refuses_a_cut_off_nifti_file(scored, ending):
    """SimpleITK reads both with zeros for the missing voxels: a wrong DSC, exit 0 before."""
    (scored["ref"] / "case_1.nii.gz").unlink()
    # Noisy labels compress badly: half the .nii.gz stream still holds the whole header.
    noisy = np.random.default_rng(1).integers(0, 3, size=label_volume().shape, dtype=np.uint8)
    reference = cut_in_half(write_volume(scored["ref"] / f"case_1{ending}", noisy))
    line = error_line(cli("evaluate", "--pred", scored["pred"], "--ref", scored["ref"], "-j", "1"))
    assert line.startswith(f"error: case case_1: {reference}: truncated")
    assert reports_in(scored["pred"]) == []


def test_evaluate_refuses_nan_voxels(scored):
    """SimpleITK reads NaN in NIfTI as 0: a float prediction of NaN background scored as if empty."""
    prediction = np.roll(label_volume(), 1, axis=2).astype(np.float32)
    prediction[0] = np.nan
    write_volume(scored["pred"] / "case_0.nii.gz", prediction)
    line = error_line(cli("evaluate", "--pred", scored["pred"], "--ref", scored["ref"], "-j", "1"))
    assert line == f"error: case case_0: {scored['pred'] / 'case_0.nii.gz'}: 4096 of 32768 voxels are NaN or infinite"
    assert reports_in(scored["pred"]) == []


def test_evaluate_refuses_the_reference_folder_as_predictions(scored):
    line = error_line(cli("evaluate", "--pred", scored["ref"], "--ref", scored["ref"], "-j", "1"))
    assert line == (
        f"error: the prediction and reference folders are the same folder ({scored['ref']}): every case would"
        " score 100%"
    )
    assert reports_in(scored["ref"]) == []


def test_evaluate_failed_rerun_leaves_earlier_reports_only_as_stale(scored):
    assert cli("evaluate", "--pred", scored["pred"], "--ref", scored["ref"], "-j", "1").returncode == 0
    earlier = {name: (scored["pred"] / name).read_bytes() for name in reports_in(scored["pred"])}
    assert sorted(earlier) == ["evaluation_per_case.csv", "evaluation_summary.json"]
    cut_in_half(scored["pred"] / "case_0.nii.gz")
    line = error_line(cli("evaluate", "--pred", scored["pred"], "--ref", scored["ref"], "-j", "1"))
    assert line.startswith(f"error: case case_0: {scored['pred'] / 'case_0.nii.gz'}: truncated")
    assert reports_in(scored["pred"]) == sorted(f"{name}.stale" for name in earlier)
    assert {name: (scored["pred"] / f"{name}.stale").read_bytes() for name in earlier} == earlier


def test_evaluate_checks_its_output_folder_before_scoring(scored, tmp_path):
    # A cut-off case that scoring would trip over: the output error must come first.
    cut_in_half(scored["pred"] / "case_1.nii.gz")
    as_file = tmp_path / "report.txt"
    as_file.write_text("not a folder", encoding="utf-8")
    line = error_line(cli("evaluate", "--pred", scored["pred"], "--ref", scored["ref"], "-o", as_file))
    assert line == f"error: output folder {as_file}: is a file; expected a folder"
    assert as_file.read_text(encoding="utf-8") == "not a folder"
    with unwritable_folder(tmp_path / "locked") as locked:
        line = error_line(cli("evaluate", "--pred", scored["pred"], "--ref", scored["ref"], "-o", locked))
        assert line.startswith(f"error: output folder {locked}: cannot write into this folder (")
        assert list(locked.iterdir()) == []


def test_an_option_value_typer_refuses_is_one_line_too(scored):
    result = cli("evaluate", "--pred", scored["pred"], "--ref", scored["ref"], "--tolerance", "-1")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: Invalid value for '--tolerance'") and lines[0].endswith("evaluate --help)")
    assert reports_in(scored["pred"]) == []


# --- predict ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """nnU-Net's 2D U-Net, one quick training in the shared baseline workspace."""
    with baseline_workspace(tmp_path_factory.getbasetemp()) as workspace:
        return train_quickly(workspace, "nnunet").parent


def predict(model: Path, source: Path, output: Path) -> subprocess.CompletedProcess:
    return cli("predict", "-i", source, "-o", output, "-m", model, "-j", "1", "--no-progress", "--no-mirroring")


def bad_volume(kind: str, folder: Path) -> Path:
    """One input of each kind that cannot be segmented as it is."""
    if kind == "cut-off .nii.gz":
        return cut_in_half(write_volume(folder / "ct_0000.nii.gz", ct_volume()))
    if kind == "cut-off .nii":
        return cut_in_half(write_volume(folder / "ct_0000.nii", ct_volume()))
    if kind == "NaN voxels":
        volume = ct_volume().astype(np.float32)
        volume[4, 10, 10] = np.nan
        return write_volume(folder / "ct_0000.nii.gz", volume)
    assert kind == "4D image"
    image = sitk.JoinSeries([sitk.GetImageFromArray(ct_volume(seed)) for seed in range(2)])
    folder.mkdir()
    sitk.WriteImage(image, str(folder / "ct_0000.nii.gz"))
    return folder / "ct_0000.nii.gz"


@pytest.mark.parametrize(
    "kind, problem",
    [
        ("cut-off .nii.gz", "truncated: the compressed stream ends early"),
        ("cut-off .nii", "truncated: the header describes 65888 bytes of header and voxels, the file holds 32944"),
        ("NaN voxels", "1 of 32768 voxels are NaN or infinite"),
        ("4D image", "a 4D image of size (64, 64, 8, 2); expected a 3D image"),
    ],
)
def test_predict_refuses_a_bad_volume_before_loading_the_model(model, tmp_path, kind, problem):
    source = bad_volume(kind, tmp_path / "in")
    line = error_line(predict(model, source, tmp_path / "out"))
    assert line.startswith(f"error: {source}: {problem}")
    assert list((tmp_path / "out").iterdir()) == []


def test_predict_names_the_corrupt_file_of_a_dicom_series(model, tmp_path):
    """GDCM leaves the file out; the series would be read a slice short and wrongly spaced."""
    image = sitk.GetImageFromArray(ct_volume())
    image.SetSpacing(SPACING)
    _write_dicom_series(image, tmp_path / "series")
    cut_in_half(tmp_path / "series" / "slice003.dcm")
    line = error_line(predict(model, tmp_path / "series", tmp_path / "out"))
    assert line.startswith(
        f"error: {tmp_path / 'series'} (DICOM series 1.2.826.0.1.3680043.2.1125.1.987): unreadable file slice003.dcm:"
        " its pixel data cannot be read"
    )
    assert list((tmp_path / "out").iterdir()) == []


def test_predict_checks_its_output_folder_first(model, tmp_path):
    source = write_volume(tmp_path / "in" / "ct_0000.nii.gz", ct_volume())
    as_file = tmp_path / "labels.nii.gz"
    as_file.write_bytes(b"keep me")
    assert error_line(predict(model, source, as_file)) == f"error: --output {as_file}: is a file; expected a folder"
    assert as_file.read_bytes() == b"keep me"
    with unwritable_folder(tmp_path / "locked") as locked:
        line = error_line(predict(model, source, locked))
        assert line.startswith(f"error: --output {locked}: cannot write into this folder (")
    missing = tmp_path / "no_such_scan.nii.gz"
    assert error_line(predict(model, missing, tmp_path / "out")) == f"error: {missing}: no such file or folder"
    assert not (tmp_path / "out").exists()


# --- features ---------------------------------------------------------------------------------


def bad_checkpoint(kind: str, path: Path) -> Path:
    if kind == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "cut-off":
        data = (FIXTURES / "dinov3_tiny_official.pth").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        assert kind.startswith("malicious")
        path.write_bytes(pickle.dumps({"weights": Exploit()}, protocol=int(kind[-1])))
    return path


class Exploit:
    """Unpickling this runs a shell command (it must never run)."""

    def __reduce__(self):
        return os.system, ("touch PWNED",)


@pytest.mark.parametrize(
    "kind, problem",
    [
        ("random bytes", "not a readable PyTorch checkpoint"),
        ("empty", "not a readable PyTorch checkpoint: the file is empty"),
        ("cut-off", "not a readable PyTorch checkpoint (truncated or corrupt?)"),
        ("malicious, pickle protocol 2", "refused to load: the file contains pickled Python objects (posix.system)"),
        ("malicious, pickle protocol 4", "refused to load: a plain pickled Python file (protocol 4)"),
    ],
)
def test_features_refuses_a_bad_checkpoint_in_one_line(tmp_path, kind, problem):
    weights = bad_checkpoint(kind, tmp_path / "weights.pth")
    result = subprocess.run(
        [sys.executable, "-m", "meddinov3.cli", "features", "--weights", str(weights), "--size", "64",
         "--out", str(tmp_path / "maps")],
        capture_output=True, encoding="utf-8", errors="replace", cwd=tmp_path,
    )
    assert error_line(result).startswith(f"error: {weights}: {problem}")
    assert "weights_only=False" not in result.stderr
    assert list((tmp_path / "maps").iterdir()) == [] and not (tmp_path / "PWNED").exists()


def test_features_refuses_a_cut_off_image_and_a_file_as_output(tmp_path):
    image = cut_in_half(write_volume(tmp_path / "ct.nii.gz", ct_volume()))
    line = error_line(cli("features", "--image", image, "--size", "64", "--out", tmp_path / "maps"))
    assert line.startswith(f"error: {image}: truncated")
    assert list((tmp_path / "maps").iterdir()) == []
    as_file = tmp_path / "maps.png"
    as_file.write_bytes(b"png")
    line = error_line(cli("features", "--size", "64", "--out", as_file))
    assert line == f"error: --out {as_file}: is a file; expected a folder"


# --- curate -----------------------------------------------------------------------------------


def test_curate_skips_broken_volumes_naming_each_and_keeps_them_out_of_the_corpus(tmp_path):
    """Before: the cut-off volume went in with slices of 0 HU, NaN became 0, the series lost a slice."""
    from meddinov3.curate import SliceCorpus

    sources = tmp_path / "in"
    good = write_volume(sources / "good.nii.gz", ct_volume(0))
    cut = cut_in_half(write_volume(sources / "cut.nii.gz", ct_volume(1)))
    with_nan = ct_volume(2).astype(np.float32)
    with_nan[1, 5, 5] = np.nan
    nan = write_volume(sources / "nan.nii.gz", with_nan)
    image = sitk.GetImageFromArray(ct_volume(3))
    image.SetSpacing(SPACING)
    _write_dicom_series(image, sources / "series")
    (sources / "series" / "slice005.dcm").write_bytes(b"")

    result = cli("curate", sources, "-o", tmp_path / "corpus")
    assert result.returncode == 0, result.stderr
    problems = " ".join(result.stderr.split())
    assert f"skipped {cut}: truncated: the compressed stream ends early" in problems
    assert f"skipped {nan}: 1 of 32768 voxels are NaN or infinite" in problems
    assert f"skipped {sources / 'series'}#1.2.826.0.1.3680043.2.1125.1.987: unreadable file slice005.dcm:" in problems
    skipped = (tmp_path / "corpus" / "skipped.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(skipped) == 3 and all(json.loads(line)["reason"] for line in skipped)
    assert [record.source for record in SliceCorpus(tmp_path / "corpus").records] == [str(good)]


def test_curate_refuses_a_file_as_corpus_folder(tmp_path):
    write_volume(tmp_path / "in" / "good.nii.gz", ct_volume())
    (tmp_path / "corpus").write_text("", encoding="utf-8")
    line = error_line(cli("curate", tmp_path / "in", "-o", tmp_path / "corpus"))
    assert line == f"error: --out {tmp_path / 'corpus'}: is a file; expected a folder"


# --- plan -------------------------------------------------------------------------------------


@pytest.fixture
def raw_dataset(tmp_path) -> tuple[Path, dict[str, str]]:
    """A fresh raw nnU-Net dataset (3 labelled cases) with its own nnU-Net folders."""
    from meddinov3.synth.toy_dataset import SyntheticDatasetSpec, write_synthetic_dataset

    env = dict(os.environ, nnUNet_n_proc_DA="1")
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / name).mkdir()
        env[name] = str(tmp_path / name)
    spec = SyntheticDatasetSpec(dataset_id=983, num_training=3, num_test=0)
    return write_synthetic_dataset(tmp_path / "nnUNet_raw", spec), env


def test_plan_names_the_case_whose_image_is_missing(raw_dataset):
    folder, env = raw_dataset
    (folder / "imagesTr" / "case001_0000.nii.gz").unlink()
    line = error_line(cli("plan", "983", "--size", "96", "-j", "1", env=env))
    assert line == (
        f"error: case case001: {folder / 'labelsTr' / 'case001.nii.gz'} has no image in {folder / 'imagesTr'}"
        " (expected case001_0000.nii.gz)"
    )
    assert list(Path(env["nnUNet_preprocessed"]).iterdir()) == []


def test_plan_names_the_case_whose_label_has_another_spacing(raw_dataset):
    folder, env = raw_dataset
    label_file = folder / "labelsTr" / "case002.nii.gz"
    label = sitk.ReadImage(str(label_file))
    image_spacing = label.GetSpacing()
    label.SetSpacing((image_spacing[0], image_spacing[1], image_spacing[2] * 2))
    sitk.WriteImage(label, str(label_file))
    line = error_line(cli("plan", "983", "--size", "96", "-j", "1", env=env))
    assert line == (
        f"error: case case002: label {label_file} has spacing {label.GetSpacing()}, its image case002_0000.nii.gz"
        f" {image_spacing}"
    )
    assert list(Path(env["nnUNet_preprocessed"]).iterdir()) == []


# --- pretrain ---------------------------------------------------------------------------------


def test_pretrain_refuses_a_missing_corpus_and_a_cut_off_init_checkpoint(tmp_path):
    args = ["pretrain", "--config", "tiny", f"run.output_dir={tmp_path / 'run'}", "optim.iterations=1"]
    line = error_line(cli(*args, f"data.corpus={tmp_path / 'no_corpus'}"))
    assert line == (
        f"error: data.corpus {tmp_path / 'no_corpus'}: not a curated corpus (no manifest.jsonl); create one with"
        " `meddinov3 curate`"
    )
    weights = bad_checkpoint("cut-off", tmp_path / "init.pth")
    line = error_line(cli(*args, f"model.init={weights}"))
    assert line.startswith(f"error: {weights}: not a readable PyTorch checkpoint (truncated or corrupt?)")
    assert not (tmp_path / "run" / "checkpoint.pth").exists()


# --- nnU-Net checkpoints ----------------------------------------------------------------------


@pytest.fixture
def copied_training(model, tmp_path) -> tuple[Path, dict[str, str]]:
    """The quick nnU-Net training copied into a results folder of its own (so it can be damaged)."""
    results = tmp_path / "results"
    target = results / model.parent.name / model.name
    shutil.copytree(model, target)
    env = dict(os.environ, nnUNet_results=str(results), nnUNet_n_proc_DA="0", nnUNet_def_n_proc="1")
    workspace_root = model.parents[2]
    env.update(nnUNet_raw=str(workspace_root / "raw"), nnUNet_preprocessed=str(workspace_root / "preprocessed"))
    return target / "fold_0", env


def resume(env: dict[str, str], epochs: int) -> subprocess.CompletedProcess:
    return cli("train", str(DATASET_ID), "--method", "nnunet", "--config", CONFIGURATION, "--continue",
               "--epochs", str(epochs), "--iterations-per-epoch", "2", "--val-iterations-per-epoch", "1",
               "--no-validate", "--device", "cpu", "-j", "0", "--no-progress", env=env)


def test_continue_falls_back_from_a_torn_checkpoint_to_the_last_readable_one(copied_training):
    """An interrupted run: no final checkpoint, the latest torn by a kill during nnU-Net's save."""
    from meddinov3.nnunet.checkpoints import read_nnunet_checkpoint

    fold, env = copied_training
    torn = fold / "checkpoint_latest.pth"
    shutil.move(fold / "checkpoint_final.pth", torn)
    cut_in_half(torn)
    assert read_nnunet_checkpoint(fold / "checkpoint_best.pth")["current_epoch"] == 1

    result = resume(env, epochs=2)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"warning: skipping an unreadable checkpoint: {torn}: not a readable PyTorch checkpoint" in result.stdout
    assert f"warning: resuming from the last readable checkpoint, {fold / 'checkpoint_best.pth'}" in result.stdout
    resumed = read_nnunet_checkpoint(fold / "checkpoint_final.pth")
    assert resumed["current_epoch"] == 2 and len(resumed["logging"]["train_losses"]) == 2
    assert not torn.exists()  # nnU-Net removes the latest checkpoint once the final one is written

    for name in ("checkpoint_final.pth", "checkpoint_best.pth"):
        cut_in_half(fold / name)
    line = error_line(resume(env, epochs=3))
    assert line.startswith(f"error: {fold}: no readable checkpoint to continue from ({fold / 'checkpoint_final.pth'}:")
    assert sorted(p.name for p in fold.glob("checkpoint_*.pth")) == ["checkpoint_best.pth", "checkpoint_final.pth"]


SAVE_FOREVER = """
import sys, torch
from meddinov3.nnunet.training import TrainingJob, build_trainer, prepare
job = TrainingJob(dataset=sys.argv[1], method="nnunet", configuration="2d", device="cpu")
trainer = build_trainer(prepare(job), job, torch.device("cpu"))
trainer.initialize()
while True:
    trainer.save_checkpoint(sys.argv[2])
"""


def test_a_kill_during_a_checkpoint_save_leaves_the_previous_checkpoint_whole(copied_training):
    """nnU-Net's trainer saving checkpoint_latest.pth in a loop, killed mid-save: the file on disk
    is always a complete checkpoint (before: torch.save into the file itself left it torn)."""
    from meddinov3.nnunet.checkpoints import read_nnunet_checkpoint

    fold, env = copied_training
    latest = fold / "checkpoint_latest.pth"
    saver = subprocess.Popen([sys.executable, "-c", SAVE_FOREVER, str(DATASET_ID), str(latest)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not latest.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        first = latest.stat().st_mtime_ns
        while latest.stat().st_mtime_ns == first and time.monotonic() < deadline:
            time.sleep(0.01)  # at least one save replaced another: the loop is saving now
        time.sleep(0.137)
    finally:
        saver.send_signal(signal.SIGKILL)
        saver.wait()
    assert read_nnunet_checkpoint(latest)["trainer_name"] == "nnUNetTrainer"
    from meddinov3.nnunet.checkpoints import resume_checkpoint

    partial = list(fold.glob(".checkpoint_latest.pth.*.tmp"))
    assert len(partial) <= 1  # the save the kill interrupted, never renamed into place
    assert resume_checkpoint(fold)[0] == fold / "checkpoint_final.pth"
    assert not list(fold.glob(".checkpoint_*.tmp"))  # a resume removes it
