"""Drive nnU-Net training from Python: what `nnUNetv2_train` does, for any method of this package.

`nnUNetv2_train` finds trainers by importing every module under nnunetv2's trainer folder, and
one of them needs timm, which does not import on every machine. Here the trainer class is
constructed directly; otherwise the steps are nnU-Net's: build the trainer from the preprocessed
plans, optionally resume, train, validate on the fold's held-out cases.
"""

from __future__ import annotations

import json
import os
import socket
from copy import deepcopy
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from meddinov3.datasets import dataset_folder_name, read_dataset_json
from meddinov3.nnunet.methods import Method, check_recipe_switch, get_method
from meddinov3.nnunet.paths import PREPROCESSED, RESULTS, NnUNetSetupError, require_folders
from meddinov3.nnunet.plans import DEFAULT_PLANS, load_plans, resolved_configuration
from meddinov3.nnunet.progress import ProgressCallback, progress_bar, reporting_iterations
from meddinov3.nnunet.spec import NetworkSpec, attach_spec, build_spec, check_patch_size, spec_in_plans


@dataclass
class TrainingJob:
    dataset: str
    method: str = "meddinov3"
    configuration: str | None = None  # None: the method's default (2d_896 for the ViTs, 2d for nnU-Net)
    fold: int | str = 0
    weights: str | None = None
    backbone: str | None = None
    backbone_overrides: dict[str, Any] = field(default_factory=dict)
    interaction_layers: list[int] | None = None
    recipe: str = "default"  # "release": also the release's slips (see meddinov3.nnunet.methods)
    epochs: int | None = None
    iterations_per_epoch: int | None = None
    val_iterations_per_epoch: int | None = None
    save_every: int | None = None
    device: str = "cuda"
    precision: str | None = None  # None: the model's recorded precision when resuming, else the device's default
    continue_training: bool = False
    validation_only: bool = False
    validate: bool = True
    num_gpus: int = 1
    plans_identifier: str = DEFAULT_PLANS
    show_progress: bool = True
    # Learning rates instead of the recipe's (decoder and everything outside the encoder; encoder).
    initial_lr: float | None = None
    encoder_lr: float | None = None
    # False: no mirroring augmentation, and with it no test-time mirroring (nnU-Net's NoMirroring).
    mirroring: bool = True
    # Called before training starts and after every iteration (in the main process).
    on_iteration: ProgressCallback | None = None


@dataclass
class PreparedRun:
    method: Method
    dataset_name: str
    configuration: str
    plans: dict
    dataset_json: dict
    output_folder_base: Path
    spec: NetworkSpec | None


def _fold(fold: int | str) -> int | str:
    if str(fold) == "all":
        return "all"
    try:
        return int(fold)
    except ValueError:
        raise ValueError(f"--fold must be an integer or 'all', got {fold!r}") from None


def model_folder(
    dataset_name: str, trainer: str, plans_name: str, configuration: str, results: Path | None = None
) -> Path:
    """Where nnU-Net puts a trained model (same naming as nnUNetTrainer), under `results`
    (default: $nnUNet_results)."""
    results = results if results is not None else require_folders(RESULTS)[RESULTS]
    return results / dataset_name / f"{trainer}__{plans_name}__{configuration}"


def _network_spec(job: TrainingJob, method: Method, configuration: str, folder: Path) -> NetworkSpec:
    stored_plans = folder / "plans.json"
    spec = None
    if (job.continue_training or job.validation_only) and stored_plans.is_file():
        spec = spec_in_plans(json.loads(stored_plans.read_text(encoding="utf-8")), configuration)
    if spec is None:
        spec = build_spec(method, job.weights, job.backbone, job.backbone_overrides, job.interaction_layers, job.recipe)
    return replace(spec, precision=job.precision or spec.precision)


def prepare(job: TrainingJob) -> PreparedRun:
    """Load plans and dataset.json, pick the configuration, and attach the network spec."""
    require_folders(PREPROCESSED, RESULTS)
    method = get_method(job.method)
    check_recipe_switch(job.recipe)
    name = dataset_folder_name(job.dataset)
    plans = load_plans(name, job.plans_identifier)
    configuration = job.configuration or method.default_configuration
    if configuration not in plans["configurations"]:
        size_hint = configuration.removeprefix("2d_") if configuration.startswith("2d_") else "896"
        raise NnUNetSetupError(
            f"configuration {configuration!r} is not in the plans of {name} "
            f"(available: {sorted(plans['configurations'])}); run `meddinov3 plan {name} --size {size_hint}` "
            f"or choose one with --config"
        )
    preprocessed = require_folders(PREPROCESSED)[PREPROCESSED] / name
    dataset_json = read_dataset_json(preprocessed).raw
    folder = model_folder(name, method.trainer, plans["plans_name"], configuration)
    spec = None
    vit_options = job.weights or job.backbone or job.backbone_overrides or job.interaction_layers or job.precision
    if method.backbone_preset is None and vit_options:
        raise ValueError(
            f"--weights/--backbone/--backbone-set/--interaction-layers/--precision apply to ViT methods, "
            f"not {method.name!r}"
        )
    if method.backbone_preset is not None:
        spec = _network_spec(job, method, configuration, folder)
        check_patch_size(resolved_configuration(plans, configuration)["patch_size"], spec, configuration)
        attach_spec(plans, configuration, spec)
    return PreparedRun(method, name, configuration, plans, dataset_json, folder, spec)


def _device(name: str) -> Any:
    import torch

    from meddinov3.devices import pick_device

    device = pick_device(name)
    if device.type == "cuda":
        # nnU-Net's setting: the GPU does the work, extra CPU threads only contend with data loading.
        torch.set_num_threads(1)
        torch.backends.cudnn.benchmark = True
    return device


def build_trainer(run: PreparedRun, job: TrainingJob, device: Any) -> Any:
    from meddinov3.nnunet.trainer_classes import trainer_class

    plans = deepcopy(run.plans)
    plans["continue_training"] = job.continue_training
    trainer = trainer_class(run.method.trainer)(
        plans=plans, configuration=run.configuration, fold=_fold(job.fold), dataset_json=run.dataset_json, device=device
    )
    for attribute, value in (
        ("num_epochs", job.epochs),
        ("num_iterations_per_epoch", job.iterations_per_epoch),
        ("num_val_iterations_per_epoch", job.val_iterations_per_epoch),
        ("save_every", job.save_every),
        ("initial_lr", job.initial_lr),
        ("encoder_lr", job.encoder_lr),
    ):
        if value is not None:
            if value <= 0:
                raise ValueError(f"{attribute} must be positive, got {value}")
            if not hasattr(trainer, attribute):
                raise ValueError(f"method {run.method.name!r} has no {attribute} to set")
            setattr(trainer, attribute, value)
    if not job.mirroring:
        without_mirroring(trainer)
    return trainer


def without_mirroring(trainer: Any) -> None:
    """Switch off nnU-Net's mirroring augmentation, and with it test-time mirroring, as nnU-Net's
    own nnUNetTrainerNoMirroring does."""
    configure = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size

    def configured() -> tuple:
        rotation, dummy_2d, patch_size, _ = configure()
        trainer.inference_allowed_mirroring_axes = None
        return rotation, dummy_2d, patch_size, None

    trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size = configured


def _restore_if_requested(trainer: Any, job: TrainingJob) -> None:
    from meddinov3.nnunet.checkpoints import read_nnunet_checkpoint, restore_trainer, resume_checkpoint

    folder = Path(trainer.output_folder)
    if job.validation_only:
        path = folder / "checkpoint_final.pth"
        if not path.is_file():
            raise NnUNetSetupError(f"{path} does not exist: validation needs a finished training")
        found = path, read_nnunet_checkpoint(path)
    elif job.continue_training:
        found = resume_checkpoint(folder, warn=trainer.print_to_log_file)
        if found is None:
            trainer.print_to_log_file(f"No checkpoint in {folder} to continue from; starting a new training.")
            return
    else:
        return
    if hasattr(trainer, "load_pretrained_weights"):
        trainer.load_pretrained_weights = False
    trainer.print_to_log_file(f"Restoring {found[0]}")
    restore_trainer(trainer, found[1])


def _train_in_this_process(run: PreparedRun, job: TrainingJob, device: Any) -> Path:
    trainer = build_trainer(run, job, device)
    _restore_if_requested(trainer, job)
    if not job.validation_only:
        callbacks = [job.on_iteration] if job.on_iteration is not None else []
        shown = job.show_progress and trainer.local_rank == 0
        with progress_bar(shown) as bar, reporting_iterations(trainer, callbacks + bar):
            trainer.run_training()
    if job.validate or job.validation_only:
        trainer.perform_actual_validation(False)
    return Path(trainer.output_folder)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world_size: int, run: PreparedRun, job: TrainingJob) -> None:
    import torch
    import torch.distributed as dist

    dist.init_process_group("nccl", rank=rank, world_size=world_size)
    try:
        torch.cuda.set_device(rank)
        _train_in_this_process(run, job, torch.device("cuda", rank))
    finally:
        dist.destroy_process_group()


def run_training(job: TrainingJob) -> Path:
    """Train (or resume, or only validate) one fold; returns the fold's output folder.

    `num_gpus > 1` runs nnU-Net's DistributedDataParallel training, one process per GPU; the
    plans' batch size is split over the GPUs as nnU-Net does.
    """
    if job.continue_training and job.validation_only:
        raise ValueError("--continue and --validation-only exclude each other")
    if job.num_gpus < 1:
        raise ValueError(f"--num-gpus must be at least 1, got {job.num_gpus}")
    if job.num_gpus > 1 and job.device not in ("cuda", "auto"):
        raise ValueError(f"multi-GPU training (--num-gpus {job.num_gpus}) needs --device cuda")
    device = _device(job.device)
    if job.precision is not None:
        from meddinov3.precision import resolve_precision

        resolve_precision(job.precision, device)  # a bad name or bf16 on a GPU without it fails before any work
    run = prepare(job)
    if job.num_gpus == 1:
        return _train_in_this_process(run, job, device)

    import torch
    import torch.multiprocessing as mp

    available = torch.cuda.device_count()
    if available < job.num_gpus:
        raise NnUNetSetupError(f"--num-gpus {job.num_gpus} requested but only {available} CUDA device(s) are visible")
    os.environ.setdefault("MASTER_ADDR", "localhost")
    os.environ.setdefault("MASTER_PORT", str(_free_port()))
    mp.spawn(_ddp_worker, args=(job.num_gpus, run, job), nprocs=job.num_gpus, join=True)
    return run.output_folder_base / f"fold_{_fold(job.fold)}"
