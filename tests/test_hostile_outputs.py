"""Hostile conditions around outputs, round two (issue 25): a full disk, broken weights, a model
folder that does not fit its dataset.json or its input's file names, label maps left by an
earlier run. Through the CLI, as a user runs it, with a real (randomly initialised) model folder.

A full disk is made two ways: a small tmpfs where this process may mount one (root), and,
anywhere, a file-size limit (RLIMIT_FSIZE, with SIGXFSZ ignored) on the command's process, with
which the kernel fails every write past the limit (EFBIG) as it fails them on a full disk
(ENOSPC): SimpleITK's NIfTI writer then leaves a cut-off file and reports success, as it does on
a full disk.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import nibabel
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import FIXTURES
from hostile_files import sitk_volume
from standalone_models import model_folder
from test_bad_inputs import ct_volume, error_line

NO_WRITE_BEYOND = 2000  # bytes: the label maps of the test scans are about 3.4 kB


def cli(*args, env=None, file_size_limit: int | None = None) -> subprocess.CompletedProcess:
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    command = [sys.executable, *map(str, args)] if args[0] == "-c" else [sys.executable, "-m", "meddinov3.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, encoding="utf-8", errors="replace", env=env,
                          preexec_fn=limit if file_size_limit is not None else None)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A 2D MedDINOv3 model folder (tiny ViT, random weights, 4 classes, 64 x 64 at 0.8 mm)."""
    with pytest.MonkeyPatch.context() as patch:
        return model_folder(tmp_path_factory.mktemp("model"), patch, 64, 0.8)


def predict(model: Path, source: Path, output: Path, **kwargs) -> subprocess.CompletedProcess:
    return cli("predict", "-i", source, "-o", output, "-m", model, "--device", "cpu", "--no-progress",
               "--no-mirroring", **kwargs)


def files_in(folder: Path) -> dict[str, int]:
    """Every file under `folder` (hidden ones too) with its size."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


@contextmanager
def small_tmpfs(path: Path, size: str, leave_free: int):
    """A tmpfs of `size` at `path`, filled up to `leave_free` bytes; skipped where mounting is not allowed."""
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode(errors='replace').strip()}); the"
                    " file-size-limit tests cover full disks without it")
    try:
        stats = os.statvfs(path)
        (path / "filler").write_bytes(b"\0" * max(0, stats.f_bavail * stats.f_frsize - leave_free))
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


# --- a full disk ------------------------------------------------------------------------------


def test_predict_into_a_full_tmpfs_fails_in_one_line_and_a_rerun_with_room_redoes_it(model, tmp_path):
    """Before: exit 0 after "writing" a 0-byte label map, which a rerun with room kept as done."""
    scan = sitk_volume(tmp_path / "in" / "ct_0000.nii.gz", ct_volume())
    with small_tmpfs(tmp_path / "disk", "1m", 0) as disk:
        line = error_line(predict(model, scan, disk / "out"))
        assert line.startswith(f"error: {disk / 'out' / 'ct.nii.gz'}: not written: ")
        assert files_in(disk / "out") == {}
        (disk / "filler").unlink()
        result = predict(model, scan, disk / "out")
        assert result.returncode == 0, result.stderr
        assert read_back(disk / "out" / "ct.nii.gz").shape == (8, 64, 64)


def test_curate_on_a_full_tmpfs_stops_in_one_line_leaving_no_partial_shard(tmp_path):
    """Before: the worker died of SIGBUS (no message), or with -j 2 an OSError traceback; a
    temporary shard was left."""
    sitk_volume(tmp_path / "in" / "ct.nii.gz", ct_volume())
    sitk_volume(tmp_path / "in" / "ct2.nii.gz", ct_volume(1))
    with small_tmpfs(tmp_path / "disk", "4m", 20_000) as disk:
        for workers in ("1", "2"):
            line = error_line(cli("curate", tmp_path / "in", "-o", disk / "corpus", "-j", workers))
            assert line.startswith(f"error: {disk / 'corpus' / 'shards'}/") and line.endswith(
                "(No space left on device)")
            assert set(files_in(disk / "corpus")) == {".curate.lock", "corpus.json"}
        (disk / "filler").unlink()
        result = cli("curate", tmp_path / "in", "-o", disk / "corpus")
        assert result.returncode == 0, result.stderr
        assert len((disk / "corpus" / "manifest.jsonl").read_text(encoding="utf-8").splitlines()) == 2


def read_back(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


@pytest.mark.parametrize("ending, problem", [
    (".nii.gz", "the compressed stream ends early"),
    (".nii", "truncated: the header describes 33120 bytes of header and voxels, the file holds 2000"),
])
def test_a_label_map_cut_off_by_a_write_limit_is_refused_and_redone(model, tmp_path, ending, problem):
    """No root needed: the kernel refuses writes past 2000 bytes. Before: SimpleITK's cut-off
    label map was renamed into place and a rerun kept it as done (it reads as a full-size image)."""
    folder = tmp_path / "model"
    shutil.copytree(model, folder)
    dataset = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    (folder / "dataset.json").write_text(json.dumps({**dataset, "file_ending": ending}), encoding="utf-8")
    scan = sitk_volume(tmp_path / "in" / f"ct_0000{ending}", ct_volume())
    out = tmp_path / "out"
    line = error_line(predict(folder, scan, out, file_size_limit=NO_WRITE_BEYOND))
    assert line.startswith(f"error: {out / ('ct' + ending)}: not written: the written file does not read back: {problem}")
    assert files_in(out) == {}
    result = predict(folder, scan, out)
    assert result.returncode == 0, result.stderr
    assert np.array_equal(read_back(out / f"ct{ending}").shape, (8, 64, 64))


def test_a_rerun_redoes_a_label_map_an_earlier_run_left_incomplete(model, tmp_path):
    """A 0-byte or cut-off label map (an older version on a full disk, a copy cut short) is not done."""
    scan = sitk_volume(tmp_path / "in" / "ct_0000.nii.gz", ct_volume())
    out = tmp_path / "out"
    assert predict(model, scan, out).returncode == 0
    whole = (out / "ct.nii.gz").read_bytes()
    labels = read_back(out / "ct.nii.gz")
    for broken in (b"", whole[: len(whole) // 2]):
        (out / "ct.nii.gz").write_bytes(broken)
        result = predict(model, scan, out)
        assert result.returncode == 0, result.stderr
        assert f"note: redoing case ct: its label map {out / 'ct.nii.gz'} is incomplete" in result.stderr
        assert np.array_equal(read_back(out / "ct.nii.gz"), labels)
    result = predict(model, scan, out)  # a whole one is kept
    assert "redoing" not in result.stderr and "predicting" not in result.stdout


def test_evaluate_reports_are_written_whole_or_not_at_all(tmp_path):
    """Before: an OSError traceback (52 lines)."""
    labels = np.zeros((8, 64, 64), np.uint8)
    labels[2:6, 20:40, 20:40] = 1
    for folder in ("ref", "pred"):
        sitk_volume(tmp_path / folder / "c1.nii.gz", labels)
    with small_tmpfs(tmp_path / "disk", "1m", 0) as disk:
        line = error_line(cli("evaluate", "--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "--output", disk))
        assert line.startswith(f"error: {disk}/evaluation_") and "not written: no space left on the device" in line
        assert files_in(disk) == {"filler": (disk / "filler").stat().st_size}


# --- broken weights ---------------------------------------------------------------------------


def with_bad_value(state: dict, key: str, value: float) -> dict:
    state = {k: v.clone() for k, v in state.items()}
    state[key].view(-1)[7] = value
    return state


def test_features_refuses_weights_with_a_nan_naming_the_tensor(tmp_path):
    """Before: a 35-line `linalg` traceback that did not name the file."""
    state = torch.load(FIXTURES / "dinov3_tiny_official.pth", weights_only=True)
    weights = tmp_path / "nan.pth"
    torch.save(with_bad_value(state, "blocks.1.attn.qkv.weight", float("nan")), weights)
    line = error_line(cli("features", "--weights", weights, "--size", "64", "--out", tmp_path / "maps"))
    assert line == (f"error: {weights}: tensor blocks.1.attn.qkv.weight holds 1 of {state['blocks.1.attn.qkv.weight'].numel()}"
                    " values that are NaN: broken weights (a training that diverged?), not used")
    assert list((tmp_path / "maps").iterdir()) == []


def test_pretrain_refuses_an_infinite_init_before_writing_anything(tmp_path):
    """Before: config and metrics were written, then a traceback."""
    from meddinov3.backbone import build_backbone
    from meddinov3.pretrain.config import load_config

    config = load_config("tiny", [])
    state = build_backbone(config.model.arch, **config.model.arch_overrides).state_dict()
    weights = tmp_path / "init.pth"
    torch.save({"teacher": {f"backbone.{k}": v for k, v in with_bad_value(state, "norm.weight", float("inf")).items()}},
               weights)
    run = tmp_path / "run"
    line = error_line(cli("pretrain", "--config", "tiny", f"run.output_dir={run}", "optim.iterations=2",
                          f"model.init={weights}", "run.device=cpu"))
    assert line.startswith(f"error: {weights}: tensor teacher/backbone.norm.weight holds 1 of ")
    assert line.endswith(" values that are infinite: broken weights (a training that diverged?), not used")
    assert not run.exists() or list(run.iterdir()) == []


def test_predict_refuses_a_model_folder_with_nan_weights_before_the_first_case(model, tmp_path):
    broken = tmp_path / "model"
    shutil.copytree(model, broken)
    checkpoint = torch.load(broken / "fold_0" / "checkpoint_final.pth", weights_only=False)
    key = next(k for k, v in checkpoint["network_weights"].items() if v.is_floating_point() and v.numel() > 7)
    checkpoint["network_weights"] = with_bad_value(checkpoint["network_weights"], key, float("nan"))
    torch.save(checkpoint, broken / "fold_0" / "checkpoint_final.pth")
    scan = sitk_volume(tmp_path / "in" / "ct_0000.nii.gz", ct_volume())
    line = error_line(predict(broken, scan, tmp_path / "out"))
    assert line.startswith(f"error: {broken / 'fold_0' / 'checkpoint_final.pth'}: tensor network_weights/{key} holds 1")
    assert files_in(tmp_path / "out") == {}


# --- model folders that do not fit ------------------------------------------------------------


def test_predict_names_a_checkpoint_with_more_classes_than_dataset_json(model, tmp_path):
    """Before: a 54-line load_state_dict traceback."""
    folder = tmp_path / "model"
    shutil.copytree(model, folder)
    dataset = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    dataset["labels"] = {name: value for name, value in dataset["labels"].items() if value < 3}
    (folder / "dataset.json").write_text(json.dumps(dataset), encoding="utf-8")
    scan = sitk_volume(tmp_path / "in" / "ct_0000.nii.gz", ct_volume())
    line = error_line(predict(folder, scan, tmp_path / "out"))
    assert line == (f"error: {folder / 'fold_0' / 'checkpoint_final.pth'}: its network predicts 4 classes, but"
                    f" {folder / 'dataset.json'} defines 3 (background, class1, class2): the dataset.json of another"
                    " model?")
    assert files_in(tmp_path / "out") == {}


def test_a_one_channel_model_given_channel_files_says_what_it_assumed(model, tmp_path):
    """Before: two cases were segmented without a word."""
    for channel in range(2):
        sitk_volume(tmp_path / "in" / f"case_{channel:04d}.nii.gz", ct_volume(channel))
    result = predict(model, tmp_path / "in", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == (
        "warning: case_0000 ... case_0001: nnU-Net's naming makes these 2 files channels of one case 'case', but the"
        " model takes one channel; each is segmented as a case of its own (label maps case_0000 ... case_0001)")
    assert sorted(files_in(tmp_path / "out")) == ["case_0000.nii.gz", "case_0001.nii.gz"]


def test_predict_refuses_inputs_that_would_share_a_label_map_or_its_folder(model, tmp_path):
    """Before: `ct.nii` and `ct.nii.gz` were both written to ct.nii.gz (one silently lost), and an
    output folder equal to the input folder made a rerun report the scan itself as a label map."""
    scans = tmp_path / "in"
    sitk_volume(scans / "ct.nii.gz", ct_volume())
    sitk_volume(scans / "ct.nii", ct_volume(1))
    line = error_line(predict(model, scans, tmp_path / "out"))
    assert line == (f"error: {scans / 'ct.nii'} and {scans / 'ct.nii.gz'}: both would be segmented into the label map"
                    " of case 'ct'; keep one of them")
    (scans / "ct.nii").unlink()
    line = error_line(predict(model, scans, scans))
    assert line.startswith(f"error: --output {scans}: is the folder of the input scans")
    assert sorted(files_in(scans)) == ["ct.nii.gz"]


def test_label_maps_have_exactly_their_scans_geometry(model, tmp_path):
    """Oblique, left-handed, anisotropic scans, and an sform-only NIfTI as nibabel writes it."""
    cos, sin = np.cos(0.4), np.sin(0.4)
    scans = [
        sitk_volume(tmp_path / "in" / "oblique_0000.nii.gz", ct_volume(), (0.7, 0.9, 3.0),
                    (cos, 0, -sin, 0, 1, 0, sin, 0, cos), (10.5, -3.25, 100.125)),
        sitk_volume(tmp_path / "in" / "mirrored_0000.nii.gz", ct_volume(1), (0.8, 0.8, 2.5), (-1, 0, 0, 0, 1, 0, 0, 0, -1)),
    ]
    affine = np.array([[0, -0.75, 0, 30.0], [0.75, 0, 0, -12.0], [0, 0, 2.0, 7.5], [0, 0, 0, 1]])
    scans.append(tmp_path / "in" / "sform_0000.nii.gz")
    nibabel.save(nibabel.Nifti1Image(ct_volume(2).transpose(2, 1, 0), affine), scans[-1])
    result = predict(model, tmp_path / "in", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    for scan in scans:
        label = tmp_path / "out" / scan.name.replace("_0000", "")
        assert np.allclose(nibabel.load(label).affine, nibabel.load(scan).affine, atol=1e-4)
        assert nibabel.load(label).shape == nibabel.load(scan).shape


IO_UNDER_A_LIMIT = """
import pickle, sys, torch
from pathlib import Path
from meddinov3.io import WriteError, atomic_write, atomic_write_text
folder = Path(sys.argv[1])
for name, write in (("checkpoint.pth", lambda: atomic_write(folder / "checkpoint.pth", lambda tmp: torch.save(
        {"w": torch.zeros(4096)}, tmp))), ("report.json", lambda: atomic_write_text(folder / "report.json", "[" + "0, " * 2000 + "0]"))):
    try:
        write()
    except WriteError as error:
        assert pickle.loads(pickle.dumps(error)).path == error.path  # crosses worker processes whole
        print(error)
"""


def test_checkpoints_and_reports_that_hit_a_write_limit_name_the_file_and_leave_nothing(tmp_path):
    result = cli("-c", IO_UNDER_A_LIMIT, tmp_path, file_size_limit=NO_WRITE_BEYOND)
    assert result.returncode == 0, result.stderr
    checkpoint, report = result.stdout.splitlines()
    assert checkpoint.startswith(f"{tmp_path / 'checkpoint.pth'}: not written: the writer failed (")  # torch's words
    assert report == f"{tmp_path / 'report.json'}: not written: File too large"
    assert files_in(tmp_path) == {}
