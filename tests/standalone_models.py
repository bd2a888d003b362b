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
from meddinov3.synth.toy_dataset import LABELS, SyntheticDatasetSpec, write_synthetic_dataset

TINY = {"embed_dim": 48, "num_heads": 2, "depth": 4}
NUM_CLASSES = len(LABELS)


def tiny_spec():
    from meddinov3.backbone import preset_config
    from meddinov3.nnunet.methods import get_method
    from meddinov3.nnunet.spec import NetworkSpec, default_interaction_layers

    config = preset_config("meddinov3_vitb16", **get_method("meddinov3").recipe.backbone, **TINY)
    return NetworkSpec("meddinov3", config.to_dict(), True, default_interaction_layers(config.depth), precision="fp32")


def model_folder(root: Path, monkeypatch: pytest.MonkeyPatch, patch: int, spacing: float, folds: int = 1,
                 num_classes: int = NUM_CLASSES) -> Path:
    """A 2D model folder under `root` (nnU-Net's folders pointed there) with `folds` checkpoints
    of different random weights, patch `patch` x `patch` at `spacing` mm in-plane."""
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_compile"):
        monkeypatch.setenv(name, "")  # restored after the test
    use_nnunet_folders(root)
    folder = None
    for fold in range(folds):
        torch.manual_seed(fold)
        with contextlib.redirect_stdout(io.StringIO()):
            trainer = standalone_trainer(tiny_spec(), (patch, patch), num_classes, 1, torch.device("cpu"), False,
                                         (spacing, spacing))
            if folder is None:
                folder = save_model_folder(trainer)
            else:
                (folder / f"fold_{fold}").mkdir()
                trainer.save_checkpoint(str(folder / f"fold_{fold}" / "checkpoint_final.pth"))
    return folder


# nnU-Net's 3D U-Net, small: three stages, the first one in-plane only (thick slices).
UNET_3D = {
    "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
    "arch_kwargs": {
        "n_stages": 3, "features_per_stage": [8, 16, 32], "conv_op": "torch.nn.modules.conv.Conv3d",
        "kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3]], "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2]],
        "n_conv_per_stage": [1, 1, 1], "n_conv_per_stage_decoder": [1, 1], "conv_bias": True,
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d", "norm_op_kwargs": {"eps": 1e-5, "affine": True},
        "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True},
    },
    "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
}


def unet_3d_model_folder(root: Path, monkeypatch: pytest.MonkeyPatch, patch: tuple[int, int, int],
                         spacing: tuple[float, float, float]) -> Path:
    """A 3d_fullres model folder of nnU-Net's own trainer (the `nnunet` method) with random weights."""
    from meddinov3.nnunet.standalone import DATASET_NAME, standalone_dataset_json, standalone_plans
    from meddinov3.nnunet.trainer_classes import trainer_class

    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_compile"):
        monkeypatch.setenv(name, "false" if name == "nnUNet_compile" else "")  # restored after the test
    use_nnunet_folders(root)
    data = root / "nnUNet_preprocessed" / DATASET_NAME / "nnUNetPlans_3d_fullres"
    data.mkdir()
    (data / "case.b2nd").touch()  # nnU-Net infers the dataset format from file endings there
    plans = standalone_plans(patch[1:], 1, spacing[1:])
    plans["configurations"]["3d_fullres"] = {
        **plans["configurations"]["2d"], "data_identifier": "nnUNetPlans_3d_fullres", "patch_size": list(patch),
        "spacing": list(spacing), "median_image_size_in_voxels": list(patch), "architecture": UNET_3D,
    }
    plans["continue_training"] = False
    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):
        trainer = trainer_class("nnUNetTrainer")(plans=plans, configuration="3d_fullres", fold=0,
                                                 dataset_json=standalone_dataset_json(NUM_CLASSES), device=torch.device("cpu"))
        trainer.initialize()
        return save_model_folder(trainer)


def synthetic_cases(root: Path, shape_zyx: tuple[int, int, int], spacing_zyx: tuple[float, float, float],
               count: int = 2) -> list[Path]:
    """`count` synthetic CT volumes (organs at varying places and sizes) as NIfTI files."""
    spec = SyntheticDatasetSpec(num_training=0, num_test=count, shape_zyx=shape_zyx, spacing_zyx=spacing_zyx)
    return sorted((write_synthetic_dataset(root, spec) / "imagesTs").glob("*.nii.gz"))
