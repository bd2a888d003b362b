"""Demo step 5: nnU-Net's fingerprint, plans and preprocessing, with the high-resolution
`2d_<size>` configuration the fine-tuning trains on (the paper's 2d_896, at demo size)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from meddinov3.demo.config import DATASET_ID
from meddinov3.demo.dataset import cpu_workers
from meddinov3.demo.steps import StepContext
from meddinov3.demo.terminal import polled
from meddinov3.demo.workspace import Workspace

PLANS = "nnUNetPlans"
MAX_PLAN_WORKERS = 4


def preprocessed_dataset(workspace: Workspace) -> Path:
    return workspace.nnunet_folder("nnUNet_preprocessed") / workspace.config.dataset_folder


def plan_phase(folder: Path, configuration: str) -> tuple[int, str]:
    """How far nnU-Net's plan-and-preprocess got, from the files it has written."""
    if not (folder / "dataset_fingerprint.json").is_file():
        return 0, "fingerprint"
    if not (folder / f"{PLANS}.json").is_file():
        return 0, "planning"
    done_2d = len(list((folder / f"{PLANS}_2d").glob("*.pkl")))
    done_high = len(list((folder / f"{PLANS}_{configuration}").glob("*.pkl")))
    return done_2d + done_high, "preprocessing 2d" if done_high == 0 else f"preprocessing {configuration}"


def plan(context: StepContext) -> dict[str, Any]:
    import torch

    from meddinov3.nnunet.plans import load_plans, plan_and_preprocess, resolved_configuration

    workspace = context.workspace
    config = workspace.config
    workers = cpu_workers(MAX_PLAN_WORKERS)
    # nnU-Net's planner sets torch's thread count to its augmentation worker count; both
    # are put back afterwards.
    threads, augmentation_workers = torch.get_num_threads(), os.environ.get("nnUNet_n_proc_DA")
    os.environ["nnUNet_n_proc_DA"] = str(workers)
    folder = preprocessed_dataset(workspace)
    context.expect(2 * config.train_cases, "fingerprint")
    try:
        with polled(context.progress, context.task, lambda: plan_phase(folder, config.configuration)):
            # The raw dataset passed nnU-Net's integrity check when it was synthesized.
            plan_and_preprocess(DATASET_ID, (config.patch_size,), workers, config.batch_size, verify_dataset=False)
    finally:
        torch.set_num_threads(threads)
        restore_environment("nnUNet_n_proc_DA", augmentation_workers)
    plans = load_plans(config.dataset_folder)
    chosen = resolved_configuration(plans, config.configuration)
    return {
        "configuration": config.configuration,
        "patch_size": chosen["patch_size"],
        "spacing": chosen["spacing"],
        "batch_size": chosen["batch_size"],
        "median_image_size": chosen["median_image_size_in_voxels"],
        "normalization": chosen["normalization_schemes"],
        "base_2d_patch_size": resolved_configuration(plans, "2d")["patch_size"],
    }


def restore_environment(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def plan_outputs(workspace: Workspace) -> list[Path]:
    return [preprocessed_dataset(workspace)]
