"""Model folders of randomly initialised tiny multi-scale ViTs and synthetic CT cases to segment with
them, for the prediction tests: no training, so any patch size, spacing and number of folds.

A random network's label map changes with every small change of its input, so two prediction
paths that agree on it agree on everything that feeds the network."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import torch

from meddinov3.nnunet.standalone import save_model_folder, standalone_trainer, use_nnunet_folders
from meddinov3.nnunet.synthetic import LABELS, SyntheticDatasetSpec, write_synthetic_dataset

TINY = {"embed_dim": 48, "num_heads": 2, "depth": 4}
NUM_CLASSES = len(LABELS)


def tiny_spec():
    from meddinov3.backbone import preset_config
    from meddinov3.nnunet.methods import get_method
    from meddinov3.nnunet.spec import NetworkSpec, default_interaction_layers

    config = preset_config("meddinov3_vitb16", **get_method("meddinov3").recipe.backbone, **TINY)
    return NetworkSpec("meddinov3", config.to_dict(), True, default_interaction_layers(config.depth), precision="fp32")


def model_folder(root: Path, monkeypatch: pytest.MonkeyPatch, patch: int, spacing: float, folds: int = 1) -> Path:
    """A 2D model folder under `root` (nnU-Net's folders pointed there) with `folds` checkpoints
    of different random weights, patch `patch` x `patch` at `spacing` mm in-plane."""
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_compile"):
        monkeypatch.setenv(name, "")  # restored after the test
    use_nnunet_folders(root)
    folder = None
    for fold in range(folds):
        torch.manual_seed(fold)
        with contextlib.redirect_stdout(io.StringIO()):
            trainer = standalone_trainer(tiny_spec(), (patch, patch), NUM_CLASSES, 1, torch.device("cpu"), False,
                                         (spacing, spacing))
            if folder is None:
                folder = save_model_folder(trainer)
            else:
                (folder / f"fold_{fold}").mkdir()
                trainer.save_checkpoint(str(folder / f"fold_{fold}" / "checkpoint_final.pth"))
    return folder


def synthetic_cases(root: Path, shape_zyx: tuple[int, int, int], spacing_zyx: tuple[float, float, float],
               count: int = 2) -> list[Path]:
    """`count` synthetic CT volumes (organs at varying places and sizes) as NIfTI files."""
    spec = SyntheticDatasetSpec(num_training=0, num_test=count, shape_zyx=shape_zyx, spacing_zyx=spacing_zyx)
    return sorted((write_synthetic_dataset(root, spec) / "imagesTs").glob("*.nii.gz"))
