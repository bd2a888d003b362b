"""nnU-Net's real trainer on made-up plans, without a dataset.

For benchmarks and checks that need exactly what `meddinov3 train` runs (network, optimiser,
loss, precision, gradient scaler, torch.compile, train_step) but feed it synthetic batches: the
GPU check, the segmentation benchmark, the precision and memory tests. `save_model_folder` turns
such a trainer into a model folder that `meddinov3 predict` reads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch

from meddinov3.io import atomic_write_json
from meddinov3.nnunet.methods import get_method
from meddinov3.nnunet.spec import NetworkSpec, attach_spec

DATASET_NAME = "Dataset999_Standalone"
CONFIGURATION = "2d"
# A CT-like intensity record for nnU-Net's CTNormalization (used when predicting from images).
_CT_INTENSITIES = {"max": 1500.0, "mean": 60.0, "median": 50.0, "min": -1000.0,
                   "percentile_00_5": -1000.0, "percentile_99_5": 1200.0, "std": 300.0}


def standalone_plans(patch_size: Sequence[int], batch_size: int, spacing: Sequence[float] = (0.8, 0.8)) -> dict:
    """A complete nnU-Net v2 plans dict with one 2D configuration of `patch_size`."""
    unet = {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {},
        "_kw_requires_import": [],
    }
    return {
        "dataset_name": DATASET_NAME,
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [3.0, *map(float, spacing)],
        "original_median_shape_after_transp": [8, *map(int, patch_size)],
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {"0": dict(_CT_INTENSITIES)},
        "configurations": {
            CONFIGURATION: {
                "data_identifier": f"nnUNetPlans_{CONFIGURATION}",
                "preprocessor_name": "DefaultPreprocessor",
                "batch_size": int(batch_size),
                "patch_size": [int(p) for p in patch_size],
                "median_image_size_in_voxels": [float(p) for p in patch_size],
                "spacing": [float(s) for s in spacing],
                "normalization_schemes": ["CTNormalization"],
                "use_mask_for_norm": [False],
                "architecture": unet,
                "batch_dice": True,
                "resampling_fn_data": "resample_data_or_seg_to_shape",
                "resampling_fn_seg": "resample_data_or_seg_to_shape",
                "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
                "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
                "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
                "resampling_fn_probabilities_kwargs": {
                    "is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None
                },
            }
        },
    }


def standalone_dataset_json(num_classes: int) -> dict:
    labels = {"background": 0, **{f"class{i}": i for i in range(1, num_classes)}}
    return {"channel_names": {"0": "CT"}, "labels": labels, "numTraining": 1, "file_ending": ".nii.gz"}


def use_nnunet_folders(root: str | os.PathLike) -> Path:
    """Point nnU-Net's preprocessed / results folders at `root` (created), with the one file
    `initialize()` reads there: it infers the dataset format from file endings, and reads no case."""
    root = Path(root)
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (root / name).mkdir(parents=True, exist_ok=True)
        os.environ[name] = str(root / name)
    data = root / "nnUNet_preprocessed" / DATASET_NAME / f"nnUNetPlans_{CONFIGURATION}"
    data.mkdir(parents=True, exist_ok=True)
    (data / "case.b2nd").touch()
    return root


def standalone_trainer(
    spec: NetworkSpec,
    patch_size: Sequence[int],
    num_classes: int,
    batch_size: int,
    device: torch.device,
    compile_network: bool | None = None,
    spacing: Sequence[float] = (0.8, 0.8),
) -> Any:
    """The method's trainer, initialised (network on `device`, optimiser, loss); call
    `use_nnunet_folders` first. `compile_network` None: nnU-Net's default (on for CUDA)."""
    from meddinov3.nnunet.trainer_classes import trainer_class

    if compile_network is not None:
        os.environ["nnUNet_compile"] = "true" if compile_network else "false"
    plans = standalone_plans(patch_size, batch_size, spacing)
    attach_spec(plans, CONFIGURATION, spec)
    plans["continue_training"] = False
    trainer = trainer_class(get_method(spec.method).trainer)(
        plans=plans, configuration=CONFIGURATION, fold=0, dataset_json=standalone_dataset_json(num_classes), device=device
    )
    trainer.initialize()
    return trainer


def synthetic_batch(trainer: Any, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """A batch shaped like nnU-Net's data loader gives the trainer: images and label maps."""
    config = trainer.configuration_manager
    shape = (config.batch_size, 1, *config.patch_size)
    classes = trainer.label_manager.num_segmentation_heads
    return {
        "data": torch.randn(shape, generator=generator),
        "target": torch.randint(0, classes, shape, generator=generator).float(),
    }


def save_model_folder(trainer: Any) -> Path:
    """Write the trainer as a trained model folder (plans.json, dataset.json, fold_0's final
    checkpoint by nnU-Net's own writer); returns the folder `meddinov3 predict -m` takes."""
    folder = Path(trainer.output_folder_base)
    # Training sets the test-time mirroring axes when it starts; the checkpoint records them.
    trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    atomic_write_json(folder / "plans.json", trainer.plans_manager.plans)
    atomic_write_json(folder / "dataset.json", trainer.dataset_json)
    trainer.save_checkpoint(str(Path(trainer.output_folder) / "checkpoint_final.pth"))
    return folder
