"""Demo steps 5-7: nnU-Net planning with the `2d_<size>` configuration, then fine-tuning the
multi-scale network from the pretrained backbone and, side by side, from random weights.

Both inits train the same network (12-block ViT, blocks 2, 5, 8, 11 -> multi-scale Primus
decoder) on fold "all" with the same schedule and learning rates (the demo's, see config.py);
only the encoder's starting weights differ. The pretrained backbone runs as the MedDINOv3
method, the random one as the DINOv3 method: the same network and recipe under two trainer
names, which gives each run its own nnU-Net model folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from meddinov3.demo.config import DATASET_ID
from meddinov3.demo.dataset import cpu_workers
from meddinov3.demo.pretraining import random_backbone
from meddinov3.demo.steps import StepContext
from meddinov3.demo.terminal import polled
from meddinov3.demo.workspace import Workspace

METHOD_OF_INIT = {"pretrained": "meddinov3", "random": "dinov3"}
FOLD = "all"
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


def model_folder(workspace: Workspace, init: str) -> Path:
    from meddinov3.nnunet.methods import get_method
    from meddinov3.nnunet.training import model_folder as nnunet_model_folder

    trainer = get_method(METHOD_OF_INIT[init]).trainer
    return nnunet_model_folder(workspace.config.dataset_folder, trainer, PLANS, workspace.config.configuration,
                               workspace.nnunet_folder("nnUNet_results"))


def augmentation_workers(device: str) -> int:
    """nnU-Net's augmentation processes: on a small CPU machine they would only compete with the
    training threads for the same cores, so augmentation runs in the main process there."""
    if device == "cuda":
        return cpu_workers(8)
    return 0 if (os.cpu_count() or 1) <= 4 else 2


def training_curves(logging: dict[str, Any]) -> dict[str, list[float]]:
    """Per-epoch numbers nnU-Net logs, as plain floats."""
    keys = ("train_losses", "val_losses", "mean_fg_dice", "ema_fg_dice", "lrs")
    curves = {key: [float(v) for v in logging.get(key, [])] for key in keys}
    starts, ends = logging.get("epoch_start_timestamps", []), logging.get("epoch_end_timestamps", [])
    curves["epoch_seconds"] = [float(e - s) for s, e in zip(starts, ends)]
    return curves


def finetune(init: str) -> Callable[[StepContext], dict[str, Any]]:
    def run(context: StepContext) -> dict[str, Any]:
        return train_init(context, init)

    return run


def train_init(context: StepContext, init: str) -> dict[str, Any]:
    """Fine-tune through `meddinov3 train`'s own path (run_training) with the demo's choices:
    its schedule and learning rates, no mirroring on CPU, augmentation in this process on small
    machines, the step's progress bar fed every iteration; a rerun continues the run."""
    from meddinov3.nnunet.checkpoints import read_nnunet_checkpoint
    from meddinov3.nnunet.progress import TrainingProgress
    from meddinov3.nnunet.training import TrainingJob, run_training

    workspace = context.workspace
    config = workspace.config
    weights = random_backbone(workspace) if init == "random" else workspace.pretrained_backbone
    final = model_folder(workspace, init) / f"fold_{FOLD}" / "checkpoint_final.pth"
    context.expect(config.epochs * config.iterations_per_epoch, "loading")
    if not final.is_file():
        os.environ["nnUNet_n_proc_DA"] = str(augmentation_workers(config.device))

        def report(progress: TrainingProgress) -> None:
            if progress.loss is None:
                context.update(progress.done, "training")
            else:
                context.advance(status=f"epoch {progress.epoch + 1}/{config.epochs}, loss {progress.loss:.3f}")

        run_training(TrainingJob(
            dataset=str(DATASET_ID), method=METHOD_OF_INIT[init], configuration=config.configuration,
            fold=FOLD, weights=str(weights), epochs=config.epochs, iterations_per_epoch=config.iterations_per_epoch,
            val_iterations_per_epoch=config.val_iterations_per_epoch, save_every=1, device=config.device,
            continue_training=True, validate=False, show_progress=False, initial_lr=config.decoder_lr,
            encoder_lr=config.encoder_lr, mirroring=config.mirroring, on_iteration=report,
        ))
    logging = read_nnunet_checkpoint(final)["logging"]
    curves = training_curves(logging)
    return {
        "init": init,
        "method": METHOD_OF_INIT[init],
        "weights": str(weights),
        "model_folder": str(model_folder(workspace, init)),
        "epochs": config.epochs,
        "iterations_per_epoch": config.iterations_per_epoch,
        "batch_size": config.batch_size,
        "decoder_lr": config.decoder_lr,
        "encoder_lr": config.encoder_lr,
        "curves": curves,
    }


def plan_outputs(workspace: Workspace) -> list[Path]:
    return [preprocessed_dataset(workspace)]


def finetune_outputs(init: str) -> Callable[[Workspace], list[Path]]:
    def outputs(workspace: Workspace) -> list[Path]:
        extra = [workspace.random_backbone.parent] if init == "random" else []
        return [model_folder(workspace, init), *extra]

    return outputs
