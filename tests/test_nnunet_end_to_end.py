"""`meddinov3 plan` -> `train` -> `predict` on a tiny CT-like NIfTI dataset, on CPU, through the CLI.

Each step runs as its own process, as a user runs it: nnU-Net reads its folder and worker-count
environment variables when imported. Volumes are 8 x 64 x 64 with 3 x 0.8 x 0.8 mm voxels; the
high-resolution configuration is 2d_96 (0.53 mm in-plane).
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import FIXTURES
from meddinov3.devices import pick_device
from meddinov3.nnunet.checkpoints import read_nnunet_checkpoint
from meddinov3.nnunet.prediction_inputs import PredictionInputError, collect_cases
from meddinov3.synth.toy_dataset import LABELS, SyntheticDatasetSpec, write_synthetic_dataset

SPEC = SyntheticDatasetSpec(dataset_id=987, num_training=5, num_test=1)
TINY_VIT = ["--backbone-set", "embed_dim=48", "--backbone-set", "num_heads=2", "--backbone-set", "depth=4"]


def short(epochs: int = 1) -> list[str]:
    """A few CPU iterations, augmentation in the main process."""
    return ["--device", "cpu", "--epochs", str(epochs), "--iterations-per-epoch", "3",
            "--val-iterations-per-epoch", "1", "-j", "0", "--no-progress"]


def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "meddinov3.cli", *args], env=env, capture_output=True, encoding="utf-8", errors="replace")
    if result.returncode != 0:
        raise AssertionError(f"meddinov3 {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("nnunet_e2e")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (root / name).mkdir()
        env[name] = str(root / name)
    env.pop("MEDDINOV3_WEIGHTS", None)
    raw = write_synthetic_dataset(root / "nnUNet_raw", SPEC)
    planned = _cli(env, "plan", str(SPEC.dataset_id), "--size", "96", "-j", "1", "--no-verify")
    (root / "plan_stdout.txt").write_text(planned.stdout, encoding="utf-8")
    return root, env, raw


def _model_dir(root: Path, trainer: str, config: str = "2d_96") -> Path:
    return root / "nnUNet_results" / SPEC.folder_name / f"{trainer}__nnUNetPlans__{config}"


def _assert_same_geometry(label_file: Path, image: sitk.Image) -> np.ndarray:
    label = sitk.ReadImage(str(label_file))
    assert label.GetSize() == image.GetSize()
    assert np.allclose(label.GetSpacing(), image.GetSpacing())
    assert np.allclose(label.GetOrigin(), image.GetOrigin())
    assert np.allclose(label.GetDirection(), image.GetDirection())
    values = sitk.GetArrayFromImage(label)
    assert set(np.unique(values)) <= set(LABELS.values())
    return values


def test_plan_adds_a_preprocessed_highres_configuration(workspace):
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    root, _, _ = workspace
    base = root / "nnUNet_preprocessed" / SPEC.folder_name
    plans = json.loads((base / "nnUNetPlans.json").read_text(encoding="utf-8"))
    low, high = plans["configurations"]["2d"], plans["configurations"]["2d_96"]
    assert high["inherits_from"] == "2d" and high["patch_size"] == [96, 96]
    assert high["data_identifier"] == "nnUNetPlans_2d_96"
    expected = [s * p / 96 for s, p in zip(low["spacing"], low["patch_size"])]
    assert np.allclose(high["spacing"], expected)
    folder = base / "nnUNetPlans_2d_96"
    dataset = infer_dataset_class(str(folder))(str(folder))
    assert len(dataset.identifiers) == SPEC.num_training
    data, seg, _, _ = dataset.load_case(dataset.identifiers[0])
    # 64 px at 0.8 mm resampled to 0.533 mm: 96 px per side; slices untouched.
    assert data.shape == (1, 8, 96, 96) and seg.shape == (1, 8, 96, 96)


def table_rows(text: str) -> dict[str, list[str]]:
    """Cells of a rich table's body rows (Unicode or ASCII borders), keyed by the first cell."""
    rows = [[cell.strip() for cell in re.split(r"[│|]", line)[1:-1]] for line in text.splitlines()]
    return {cells[0]: cells for cells in rows if len(cells) > 1 and cells[0]}


def test_plan_prints_a_short_table_and_logs_what_nnunet_prints(workspace):
    root, _, _ = workspace
    out = (root / "plan_stdout.txt").read_text(encoding="utf-8")
    lines = out.replace(str(root), "ROOT").splitlines()  # paths are as long as the machine makes them
    assert len(lines) <= 20 and max(map(len, lines)) <= 100, out
    assert "'data_identifier'" not in out and "Plans were saved" not in out  # nnU-Net's dictionaries are not shown
    plans = json.loads((root / "nnUNet_preprocessed" / SPEC.folder_name / "nnUNetPlans.json").read_text(encoding="utf-8"))
    rows = table_rows(out)
    assert set(rows) >= set(plans["configurations"])
    for name, preprocessed in (("2d", "yes"), ("2d_96", "yes"), ("3d_fullres", "no")):
        config = {**plans["configurations"].get(plans["configurations"][name].get("inherits_from", ""), {}),
                  **plans["configurations"][name]}
        assert rows[name] == [
            name,
            "x".join(str(int(p)) for p in config["patch_size"]),
            "x".join(f"{s:.3g}" for s in config["spacing"]),
            str(config["batch_size"]),
            "x".join(f"{m:.0f}" for m in config["median_image_size_in_voxels"]),
            preprocessed,
        ]
    assert rows["2d_96"][1:3] == ["96x96", "0.533x0.533"]
    log = root / "nnUNet_preprocessed" / SPEC.folder_name / "meddinov3_plan.log"
    assert f"nnU-Net's output: {log}" in out
    logged = log.read_text(encoding="utf-8")
    for printed in ("Plans were saved to", "Configuration: 2d_96", "'data_identifier': 'nnUNetPlans_2d_96'"):
        assert printed in logged


def test_plan_fits_the_highres_batch_to_the_gpu_memory(tmp_path):
    """--gpu-memory with room for one 512x512 slice of ViT-B/16 training but not two: batch 1.
    (The estimate costs the same at any size: it is extrapolated from small ones.)"""
    from meddinov3.nnunet.memory import GIB, USABLE_FRACTION, paper_network_estimate

    spec = SyntheticDatasetSpec(dataset_id=988, num_training=2, num_test=0)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / name).mkdir()
        env[name] = str(tmp_path / name)
    write_synthetic_dataset(tmp_path / "nnUNet_raw", spec)
    estimate = paper_network_estimate(512, len(LABELS), 1)
    assert estimate.total_bytes(2) > estimate.total_bytes(1) > estimate.weight_state_bytes  # activations set the peak
    room_for_one = (estimate.total_bytes(1) + estimate.total_bytes(2)) / 2 / USABLE_FRACTION / GIB
    result = _cli(env, "plan", "988", "--size", "512", "-j", "1", "--no-verify", "--gpu-memory", f"{room_for_one:.6f}")
    plans = json.loads((tmp_path / "nnUNet_preprocessed" / spec.folder_name / "nnUNetPlans.json").read_text(encoding="utf-8"))
    assert plans["configurations"]["2d_512"]["batch_size"] == 1
    assert plans["configurations"]["2d"]["batch_size"] > 1
    assert "2d_512: batch size 1" in result.stdout and "at most 1 fit" in result.stdout


def test_train_validate_resume_and_predict_tiny_vit(workspace, tmp_path):
    root, env, raw = workspace
    _cli(env, "train", str(SPEC.dataset_id), "--method", "scratch", "--config", "2d_96", *TINY_VIT, *short())
    model = _model_dir(root, "ViTScratchTrainer")
    fold = model / "fold_0"
    for name in ("checkpoint_final.pth", "progress.png", "validation/summary.json"):
        assert (fold / name).is_file(), name
    first = read_nnunet_checkpoint(fold / "checkpoint_final.pth")
    assert first["current_epoch"] == 1

    _cli(env, "train", str(SPEC.dataset_id), "--method", "scratch", "--config", "2d_96", "--continue",
         "--no-validate", *short(epochs=2))
    resumed = read_nnunet_checkpoint(fold / "checkpoint_final.pth")
    assert resumed["current_epoch"] == 2
    # The resumed run kept epoch 0's log and added epoch 1.
    losses = resumed["logging"]["train_losses"]
    assert len(losses) == 2 and losses[0] == pytest.approx(first["logging"]["train_losses"][0])
    assert resumed["logging"]["lrs"][1] == pytest.approx(3e-4 * (1 - 1 / 2))
    stored = json.loads((model / "plans.json").read_text(encoding="utf-8"))["configurations"]["2d_96"]["meddinov3"]
    assert stored["method"] == "scratch" and stored["backbone"]["depth"] == 4

    image_file = raw / "imagesTs" / "case005_0000.nii.gz"
    out = tmp_path / "pred"
    result = _cli(env, "predict", "-i", str(image_file), "-o", str(out), "-m", str(model), "-j", "1", "--no-progress")
    _assert_same_geometry(out / "case005.nii.gz", sitk.ReadImage(str(image_file)))
    # --device auto (the default: the CPU here), at the precision training recorded.
    assert f"predicting on {pick_device('auto').type} (fp32)" in result.stdout


def _write_dicom_series(image: sitk.Image, folder: Path) -> None:
    """One CT slice per file, with the tags a scanner writes for geometry."""
    folder.mkdir(parents=True)
    volume = sitk.Cast(image, sitk.sitkInt16)
    series_uid = "1.2.826.0.1.3680043.2.1125.1.987"
    direction = volume.GetDirection()
    row, column = (direction[0], direction[3], direction[6]), (direction[1], direction[4], direction[7])
    orientation = "\\".join(str(v) for v in (*row, *column))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for z in range(volume.GetDepth()):
        slice_ = volume[:, :, z]
        position = volume.TransformIndexToPhysicalPoint((0, 0, z))
        tags = {
            "0008|0060": "CT",
            "0020|000d": "1.2.826.0.1.3680043.2.1125.1",
            "0020|000e": series_uid,
            "0020|0013": str(z + 1),
            "0020|0032": "\\".join(map(str, position)),
            "0020|0037": orientation,
            "0028|0030": "\\".join(map(str, volume.GetSpacing()[:2])),
            "0018|0050": str(volume.GetSpacing()[2]),
            "0008|0018": f"{series_uid}.{z + 1}",
            "0028|1052": "0",
            "0028|1053": "1",
        }
        for key, value in tags.items():
            slice_.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"slice{z:03d}.dcm"))
        writer.Execute(slice_)


def test_pretrained_meddinov3_trains_and_predicts_without_its_weights_file(workspace, tmp_path):
    """The fine-tuned model carries its encoder: prediction rebuilds the network from plans.json."""
    root, env, raw = workspace
    weights = tmp_path / "teacher.pth"
    shutil.copy(FIXTURES / "meddinov3_tiny_teacher.pth", weights)
    _cli(env, "train", str(SPEC.dataset_id), "--method", "meddinov3", "--config", "2d_96", "--weights", str(weights),
         "--no-validate", *short())
    weights.unlink()

    model = _model_dir(root, "MedDINOv3Trainer")
    stored = json.loads((model / "plans.json").read_text(encoding="utf-8"))["configurations"]["2d_96"]["meddinov3"]
    assert stored["pretrained_weights"] == str(weights)
    assert stored["interaction_layers"] == [2, 5, 8, 11] and stored["backbone"]["rope_dtype"] == "bf16"

    image = sitk.ReadImage(str(raw / "imagesTs" / "case005_0000.nii.gz"))
    dicom = tmp_path / "series"
    _write_dicom_series(image, dicom)
    out = tmp_path / "pred"
    _cli(env, "predict", "-i", str(dicom), "-o", str(out), "-m", str(model), "--no-mirroring", "-j", "1",
         "--no-progress")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(dicom)))
    _assert_same_geometry(out / "series.nii.gz", reader.Execute())


def test_release_recipe_is_recorded_in_the_plans_and_predicts(workspace, tmp_path):
    """`--recipe release` on the official-layout file: the release's ViT, recorded so prediction rebuilds it."""
    root, env, raw = workspace
    _cli(env, "train", str(SPEC.dataset_id), "--method", "dinov3", "--config", "2d_96", "--recipe", "release",
         "--weights", str(FIXTURES / "dinov3_tiny_official.pth"), "--no-validate", *short())
    model = _model_dir(root, "DINOv3Trainer")
    stored = json.loads((model / "plans.json").read_text(encoding="utf-8"))["configurations"]["2d_96"]["meddinov3"]
    assert stored["recipe"] == "release"
    backbone = stored["backbone"]
    assert (backbone["n_storage_tokens"], backbone["norm_eps"], backbone["rope_dtype"]) == (0, 1e-6, "bf16")
    log = next((model / "fold_0").glob("training_log_*.txt")).read_text(encoding="utf-8")
    assert "dropped 13 tensors" in log and "storage_tokens" in log

    _cli(env, "predict", "-i", str(raw / "imagesTs"), "-o", str(tmp_path), "-m", str(model), "-j", "1",
         "--no-progress", "--no-mirroring")
    _assert_same_geometry(tmp_path / "case005.nii.gz", sitk.ReadImage(str(raw / "imagesTs" / "case005_0000.nii.gz")))


def test_nnunet_baseline_through_the_same_driver(workspace, tmp_path):
    root, env, raw = workspace
    _cli(env, "train", str(SPEC.dataset_id), "--method", "nnunet", "--config", "2d", "--no-validate", *short())
    model = _model_dir(root, "nnUNetTrainer", "2d")
    image_folder = raw / "imagesTs"
    _cli(env, "predict", "-i", str(image_folder), "-o", str(tmp_path), "-m", str(model), "-j", "1", "--no-progress",
         "--no-mirroring")
    _assert_same_geometry(tmp_path / "case005.nii.gz", sitk.ReadImage(str(image_folder / "case005_0000.nii.gz")))


def test_clear_errors(workspace):
    _, env, _ = workspace
    no_env = {k: v for k, v in env.items() if not k.startswith("nnUNet_")}
    result = subprocess.run([sys.executable, "-m", "meddinov3.cli", "train", "987", "--device", "cpu"],
                            env=no_env, capture_output=True, encoding="utf-8", errors="replace")
    assert result.returncode == 1 and "nnUNet_preprocessed" in result.stderr and "Traceback" not in result.stderr
    result = subprocess.run([sys.executable, "-m", "meddinov3.cli", "train", "987", "--device", "cpu",
                             "--method", "meddinov3"], env=env, capture_output=True, encoding="utf-8", errors="replace")
    assert result.returncode == 1 and "2d_896" in result.stderr and "meddinov3 plan" in result.stderr


def test_prediction_inputs(tmp_path):
    with pytest.raises(PredictionInputError, match="neither NIfTI files nor a DICOM series"):
        collect_cases(tmp_path, 1, tmp_path)
    for name in ("a_0000.nii.gz", "a_0001.nii.gz", "b_0000.nii.gz"):
        (tmp_path / name).touch()
    with pytest.raises(PredictionInputError, match="case 'b'"):
        collect_cases(tmp_path, 2, tmp_path)
    (tmp_path / "b_0000.nii.gz").unlink()
    assert [(c.name, len(c.files)) for c in collect_cases(tmp_path, 2, tmp_path)] == [("a", 2)]
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("ct.nii", "scan_0001.nii.gz", "scan_0002.nii.gz"):
        (plain / name).touch()
    # Numbered scans of a one-channel model are cases, not channels.
    assert [c.name for c in collect_cases(plain, 1, tmp_path)] == ["ct", "scan_0001", "scan_0002"]


TRAIN_WITH_DEMO_CHOICES = """
import json, sys
from meddinov3.nnunet.checkpoints import read_nnunet_checkpoint
from meddinov3.nnunet.training import TrainingJob, run_training

seen = []
folder = run_training(TrainingJob(
    dataset=sys.argv[1], method="scratch", configuration="2d_96", fold=1,
    backbone_overrides={"embed_dim": 48, "num_heads": 2, "depth": 4}, epochs=1, iterations_per_epoch=3,
    val_iterations_per_epoch=1, device="cpu", validate=False, show_progress=False,
    initial_lr=2e-3, encoder_lr=1e-3, mirroring=False, on_iteration=seen.append,
))
checkpoint = read_nnunet_checkpoint(folder / "checkpoint_final.pth")
print(json.dumps({
    "seen": [[p.done, p.total, p.epoch, p.loss] for p in seen],
    "rates": {g["name"]: g["initial_lr"] for g in checkpoint["optimizer_state"]["param_groups"]},
    "mirroring": checkpoint["inference_allowed_mirroring_axes"],
}))
"""


def test_training_job_takes_the_demos_rates_mirroring_switch_and_iteration_callback(workspace):
    """The demo fine-tunes through run_training: its learning rates reach the optimiser's groups,
    mirroring is off for training and for the model's inference, and the callback sees the start
    and every iteration with its loss."""
    root, env, raw = workspace
    env = dict(env, nnUNet_n_proc_DA="0", nnUNet_def_n_proc="1")
    result = subprocess.run([sys.executable, "-c", TRAIN_WITH_DEMO_CHOICES, str(SPEC.dataset_id)], env=env,
                            capture_output=True, encoding="utf-8", errors="replace")
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["rates"] == {"decoder": 2e-3, "encoder": 1e-3}
    assert found["mirroring"] is None
    assert [row[:3] for row in found["seen"]] == [[0, 3, 0], [1, 3, 0], [2, 3, 0], [3, 3, 0]]
    assert found["seen"][0][3] is None and all(np.isfinite(row[3]) for row in found["seen"][1:])
