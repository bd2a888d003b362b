"""A fine-tuning run of the demo: which init, fold and plans, the `meddinov3 train` job it is, and
what the report reads of it once finished.

Both inits train the same network (12-block ViT, blocks 2, 5, 8, 11 -> multi-scale Primus
decoder) with the same schedule and learning rates (the demo's, see config.py); only the
encoder's starting weights differ. The pretrained backbone runs as the MedDINOv3 method, the
random one as the DINOv3 method: the same network and recipe under two trainer names, which gives
each run its own nnU-Net model folder. A run is `meddinov3 train`'s own path (run_training);
`side_by_side.py` decides where it runs, `finetuning.py` and `few_labels.py` which runs there are.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meddinov3.demo.config import DATASET_ID
from meddinov3.demo.dataset import cpu_workers
from meddinov3.demo.planning import PLANS
from meddinov3.demo.workspace import Workspace

METHOD_OF_INIT = {"pretrained": "meddinov3", "random": "dinov3"}
FOLD = "all"


@dataclass(frozen=True)
class FineTuningRun:
    """One fine-tuning: an init, the nnU-Net fold (its cases come from splits_final.json, or every
    training case for 'all'), the plans identifier it trains under, and its length."""

    init: str
    fold: int | str
    plans_identifier: str
    epochs: int

    def fold_folder(self, workspace: Workspace) -> Path:
        return model_folder(workspace, self.init, self.plans_identifier) / f"fold_{self.fold}"

    def finished(self, workspace: Workspace) -> bool:
        return (self.fold_folder(workspace) / "checkpoint_final.pth").is_file()

    def iterations(self, workspace: Workspace) -> int:
        return self.epochs * workspace.config.iterations_per_epoch


def model_folder(workspace: Workspace, init: str, plans_identifier: str = PLANS) -> Path:
    from meddinov3.nnunet.methods import get_method
    from meddinov3.nnunet.training import model_folder as nnunet_model_folder

    trainer = get_method(METHOD_OF_INIT[init]).trainer
    return nnunet_model_folder(workspace.config.dataset_folder, trainer, plans_identifier,
                               workspace.config.configuration, workspace.nnunet_folder("nnUNet_results"))


def augmentation_workers(device: str) -> int:
    """nnU-Net's augmentation processes: on a small CPU machine they would only compete with the
    training for the same cores, so augmentation runs in the training process there."""
    if device == "cuda":
        return cpu_workers(8)
    return 0 if (os.cpu_count() or 1) <= 4 else 2


def training_job(workspace: Workspace, run: FineTuningRun, on_iteration: Any = None) -> Any:
    """`meddinov3 train` with the demo's choices: its learning rates, no mirroring on CPU, no
    final validation (the held-out cases are scored instead); a rerun continues the run."""
    from meddinov3.nnunet.training import TrainingJob

    config = workspace.config
    return TrainingJob(
        dataset=str(DATASET_ID), method=METHOD_OF_INIT[run.init], configuration=config.configuration,
        fold=run.fold, weights=str(workspace.backbone(run.init)), epochs=run.epochs,
        iterations_per_epoch=config.iterations_per_epoch, val_iterations_per_epoch=config.val_iterations_per_epoch,
        save_every=1, device=config.device, continue_training=True, validate=False, show_progress=False,
        plans_identifier=run.plans_identifier, initial_lr=config.decoder_lr, encoder_lr=config.encoder_lr,
        mirroring=config.mirroring, on_iteration=on_iteration,
    )


def training_curves(logging: dict[str, Any]) -> dict[str, list[float]]:
    """Per-epoch numbers nnU-Net logs, as plain floats."""
    keys = ("train_losses", "val_losses", "mean_fg_dice", "ema_fg_dice", "lrs")
    curves = {key: [float(v) for v in logging.get(key, [])] for key in keys}
    starts, ends = logging.get("epoch_start_timestamps", []), logging.get("epoch_end_timestamps", [])
    curves["epoch_seconds"] = [float(e - s) for s, e in zip(starts, ends)]
    return curves


def run_summary(workspace: Workspace, run: FineTuningRun) -> dict[str, Any]:
    """A finished run as the report reads it: settings and nnU-Net's per-epoch curves."""
    from meddinov3.nnunet.checkpoints import read_nnunet_checkpoint

    config = workspace.config
    curves = training_curves(read_nnunet_checkpoint(run.fold_folder(workspace) / "checkpoint_final.pth")["logging"])
    return {
        "init": run.init,
        "method": METHOD_OF_INIT[run.init],
        "weights": str(workspace.backbone(run.init)),
        "model_folder": str(model_folder(workspace, run.init, run.plans_identifier)),
        "fold": run.fold,
        "epochs": run.epochs,
        "iterations_per_epoch": config.iterations_per_epoch,
        "batch_size": config.batch_size,
        "decoder_lr": config.decoder_lr,
        "encoder_lr": config.encoder_lr,
        "curves": curves,
    }
