"""`meddinov3 export` as a user runs it: the file it writes, and one `error:` line for a model
folder it cannot export (a missing fold or checkpoint, plans of another model, a torn file),
leaving an earlier export in place."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from meddinov3.errors import InputError
from meddinov3.export.metadata import read_metadata
from meddinov3.export.onnx_file import export_onnx
from test_export_onnx import write_model_folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """A tiny ViT model folder and nnU-Net U-Net one (whose plans carry no network spec)."""
    root = tmp_path_factory.mktemp("export_cli")
    return {method: write_model_folder(root / method, method) for method in ("scratch", "nnunet")}


def export_cli(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ, LC_ALL="C", OMP_NUM_THREADS="1")  # CI's ASCII-only locale
    return subprocess.run([sys.executable, "-m", "meddinov3.cli", "export", *map(str, args)], capture_output=True,
                          encoding="utf-8", errors="replace", env=env)


def error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, f"exit {result.returncode}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-4000:]
    return lines[0]


def copied(model_dir: Path, target: Path) -> Path:
    shutil.copytree(model_dir, target)
    return target


def test_export_replaces_the_file_atomically_and_says_where(folders, tmp_path):
    output = tmp_path / "unet.onnx"
    output.write_bytes(b"an older export")
    result = export_cli(folders["nnunet"], "--onnx", output)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.strip() == f"wrote {output}" and result.stderr == ""
    assert read_metadata(output)["model"]["trainer"] == "nnUNetTrainer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unet.onnx"]  # no temp file left


def test_a_bad_model_folder_is_one_error_line_and_the_old_file_stays(folders, tmp_path):
    output = tmp_path / "model.onnx"
    output.write_bytes(b"an earlier export")
    missing = folders["scratch"] / "fold_1" / "checkpoint_final.pth"
    assert error_line(export_cli(folders["scratch"], "--onnx", output, "--fold", "1")) == (
        f"error: {missing}: checkpoint not found (train this fold first or pick --checkpoint)"
    )
    other = copied(folders["scratch"], tmp_path / "other_plans")
    shutil.copy(folders["nnunet"] / "plans.json", other / "plans.json")
    line = error_line(export_cli(other, "--onnx", output))
    assert line.startswith(f"error: {other / 'plans.json'}: these plans carry no MedDINOv3 network spec")
    assert error_line(export_cli(folders["scratch"], "--onnx", tmp_path)) == (
        f"error: --onnx {tmp_path}: is a folder; expected a file name such as model.onnx"
    )
    assert output.read_bytes() == b"an earlier export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "other_plans"]


def _edit_plans(folder: Path, edit) -> None:
    plans = json.loads((folder / "plans.json").read_text(encoding="utf-8"))
    edit(plans)
    (folder / "plans.json").write_text(json.dumps(plans), encoding="utf-8")


def _shallower_backbone(plans: dict) -> None:
    plans["configurations"]["2d"]["meddinov3"]["backbone"]["depth"] = 3


def _tear_plans(folder: Path) -> None:
    text = (folder / "plans.json").read_text(encoding="utf-8")
    (folder / "plans.json").write_text(text[: len(text) // 2], encoding="utf-8")


BAD_FOLDERS = {
    "no dataset.json": (lambda f: (f / "dataset.json").unlink(), "{folder}: not a trained model folder (no dataset.json)"),
    "torn plans.json": (_tear_plans, "{folder}/plans.json: not readable as JSON"),
    "plans without the configuration": (
        lambda f: _edit_plans(f, lambda p: p["configurations"].pop("2d")),
        "{folder}/plans.json: has no configuration '2d', which {folder}/fold_0/checkpoint_final.pth was trained with",
    ),
    "plans of a shallower network": (
        lambda f: _edit_plans(f, _shallower_backbone),
        "{folder}/fold_0/checkpoint_final.pth: weights do not fit the network {folder}/plans.json describes "
        "(15 unexpected (e.g. dino_encoder.blocks.3.norm1.weight, dino_encoder.blocks.3.norm1.bias, "
        "dino_encoder.blocks.3.attn.qkv.weight))",
    ),
}


@pytest.mark.parametrize("kind", BAD_FOLDERS)
def test_each_bad_model_folder_is_named(folders, tmp_path, kind):
    spoil, message = BAD_FOLDERS[kind]
    folder = copied(folders["scratch"], tmp_path / "model")
    spoil(folder)
    with pytest.raises(InputError) as raised:
        export_onnx(folder, tmp_path / "model.onnx")
    assert str(raised.value).startswith(message.format(folder=folder))
    assert not (tmp_path / "model.onnx").exists()
