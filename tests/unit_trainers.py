"""nnU-Net trainers built on a minimal but complete 2D plans dict, without a dataset on disk.

`nnunet_env` (conftest.py) provides the nnU-Net folders that `initialize()` looks at.
"""

from __future__ import annotations

import copy

import torch

from meddinov3.nnunet.methods import METHODS
from meddinov3.nnunet.spec import attach_spec, build_spec
from meddinov3.nnunet.standalone import standalone_plans

# nnU-Net's default 2D U-Net for a 64 x 64 patch, as its planner writes it.
STAGES = 5
PLAIN_UNET = {
    "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
    "arch_kwargs": {
        "n_stages": STAGES,
        "features_per_stage": [32, 64, 128, 256, 512],
        "conv_op": "torch.nn.modules.conv.Conv2d",
        "kernel_sizes": [[3, 3]] * STAGES,
        "strides": [[1, 1]] + [[2, 2]] * (STAGES - 1),
        "n_conv_per_stage": [2] * STAGES,
        "n_conv_per_stage_decoder": [2] * (STAGES - 1),
        "conv_bias": True,
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm2d",
        "norm_op_kwargs": {"eps": 1e-05, "affine": True},
        "dropout_op": None,
        "dropout_op_kwargs": None,
        "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True},
    },
    "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
}

DATASET_JSON = {
    "channel_names": {"0": "CT"},
    "labels": {"background": 0, "liver": 1, "kidney": 2},
    "numTraining": 5,
    "file_ending": ".nii.gz",
}


def unit_plans(patch=(64, 64)) -> dict:
    """nnU-Net v2 plans with one 2D configuration: the standalone plans with nnU-Net's U-Net
    architecture filled in (the `nnunet` method builds it) and this module's dataset name."""
    plans = standalone_plans(patch, batch_size=2)
    plans["dataset_name"] = "Dataset990_Unit"
    plans["configurations"]["2d"]["architecture"] = copy.deepcopy(PLAIN_UNET)
    return plans


def plans_with(method: str, weights=None, recipe: str = "default", **overrides) -> dict:
    plans = unit_plans()
    spec = build_spec(METHODS[method], weights=weights, backbone_overrides=overrides or None, recipe=recipe)
    attach_spec(plans, "2d", spec)
    return plans


def initialized_trainer(cls, plans, configuration="2d"):
    plans = copy.deepcopy(plans)
    plans["continue_training"] = False
    trainer = cls(plans=plans, configuration=configuration, fold=0, dataset_json=DATASET_JSON,
                  device=torch.device("cpu"))
    trainer.initialize()
    return trainer
