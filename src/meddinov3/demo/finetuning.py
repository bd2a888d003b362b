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
TRAINER_OF_METHOD = {"meddinov3": "MedDINOv3Trainer", "dinov3": "DINOv3Trainer"}
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
    trainer = TRAINER_OF_METHOD[METHOD_OF_INIT[init]]
    results = workspace.nnunet_folder("nnUNet_results") / workspace.config.dataset_folder
    return results / f"{trainer}__{PLANS}__{workspace.config.configuration}"


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


def with_progress(trainer: Any, report: Callable[[float], None]) -> None:
    """Report every training iteration's loss (nnU-Net's own hook is per epoch)."""
    step = trainer.train_step

    def train_step(batch: dict) -> dict:
        result = step(batch)
        report(float(result["loss"]))
        return result

    trainer.train_step = train_step


def without_mirroring(trainer: Any) -> None:
    """Switch off nnU-Net's mirroring augmentation, and with it test-time mirroring, as nnU-Net's
    own nnUNetTrainerNoMirroring does."""
    configure = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size

    def configured() -> tuple:
        rotation, dummy_2d, patch_size, _ = configure()
        trainer.inference_allowed_mirroring_axes = None
        return rotation, dummy_2d, patch_size, None

    trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size = configured


def finetune(init: str) -> Callable[[StepContext], dict[str, Any]]:
    def run(context: StepContext) -> dict[str, Any]:
        return train_init(context, init)

    return run


def train_init(context: StepContext, init: str) -> dict[str, Any]:
    import torch

    from meddinov3.nnunet.checkpoints import read_nnunet_checkpoint, restore_trainer, resume_checkpoint
    from meddinov3.nnunet.training import TrainingJob, build_trainer, prepare

    workspace = context.workspace
    config = workspace.config
    weights = random_backbone(workspace) if init == "random" else workspace.pretrained_backbone
    fold_folder = model_folder(workspace, init) / f"fold_{FOLD}"
    final = fold_folder / "checkpoint_final.pth"
    total = config.epochs * config.iterations_per_epoch
    context.expect(total, "loading")
    if not final.is_file():
        os.environ["nnUNet_n_proc_DA"] = str(augmentation_workers(config.device))
        resume = resume_checkpoint(fold_folder)
        job = TrainingJob(
            dataset=str(DATASET_ID), method=METHOD_OF_INIT[init], configuration=config.configuration,
            fold=FOLD, weights=str(weights), epochs=config.epochs,
            iterations_per_epoch=config.iterations_per_epoch,
            val_iterations_per_epoch=config.val_iterations_per_epoch, save_every=1, device=config.device,
            continue_training=resume is not None, validate=False, show_progress=False,
        )
        trainer = build_trainer(prepare(job), job, torch.device(config.device))
        # Read by configure_optimizers when the trainer initialises, after this.
        trainer.initial_lr, trainer.encoder_lr = config.decoder_lr, config.encoder_lr
        if resume is not None:
            trainer.load_pretrained_weights = False  # the checkpoint holds every weight
            restore_trainer(trainer, resume[1])
        context.update(trainer.current_epoch * config.iterations_per_epoch, "training")

        def report(loss: float) -> None:
            context.advance(status=f"epoch {trainer.current_epoch + 1}/{config.epochs}, loss {loss:.3f}")

        with_progress(trainer, report)
        if not config.mirroring:
            without_mirroring(trainer)
        trainer.run_training()
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
