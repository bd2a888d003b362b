"""`meddinov3 plan`, `meddinov3 train`, `meddinov3 predict`: nnU-Net jobs for every method.

nnU-Net's folders come from the environment (nnUNet_raw, nnUNet_preprocessed, nnUNet_results).
Heavy imports stay inside the functions: nnU-Net reads its process counts when imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from meddinov3.cli_errors import errors_as_one_line
from meddinov3.nnunet.methods import METHODS

_METHODS_HELP = " | ".join(METHODS)
_DEVICES_HELP = "auto, cuda, mps or cpu (auto: CUDA, else MPS, else CPU)."


def _clear_errors():
    """The failure kinds of the nnU-Net jobs, reported as one line (see `errors_as_one_line`):
    InputError (bad paths, files, checkpoints, nnU-Net set-up) and invalid values."""
    return errors_as_one_line(ValueError)


def _parse_overrides(items: list[str]) -> dict[str, Any]:
    """`key=value` pairs, read by the one override parser (`meddinov3.overrides`)."""
    from meddinov3.overrides import parse_assignment

    overrides = {}
    for item in items:
        try:
            key, value = parse_assignment(item)
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--backbone-set") from None
        overrides[key] = value
    return overrides


def _parse_layers(text: Optional[str]) -> Optional[list[int]]:
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated block indices, got {text!r}") from None


def fold_value(text: str) -> int | str:
    if text == "all":
        return text
    if text.isdigit():
        return int(text)
    raise ValueError(f"--fold takes a fold number or 'all', got {text!r}")


def plan(
    dataset: str = typer.Argument(..., help="Dataset id (e.g. 501) or name (Dataset501_AMOS) under $nnUNet_raw."),
    size: list[int] = typer.Option([896], "--size", help="Side of the high-resolution 2D patch (repeatable)."),
    batch_size: Optional[int] = typer.Option(
        None, min=1, help="Batch size of the 2d_<size> configs (default: the 2d one's, as in the paper)."
    ),
    gpu_memory: Optional[float] = typer.Option(
        None, min=1.0, help="GPU memory in GiB: lower the 2d_<size> batch size until training --method's network fits it."
    ),
    method: str = typer.Option("meddinov3", help="With --gpu-memory: the method whose network is planned for."),
    backbone: Optional[str] = typer.Option(
        None, help="With --gpu-memory: the backbone preset it trains (default: the method's), as `train --backbone`."
    ),
    num_processes: int = typer.Option(4, "--num-processes", "-j", min=1, help="Worker processes."),
    verify: bool = typer.Option(
        True, help="Check the raw dataset first: every case's files whole and finite, on its label's grid, known labels."
    ),
    reuse_fingerprint: bool = typer.Option(True, help="Keep an existing dataset fingerprint (off: recompute it)."),
) -> None:
    """nnU-Net fingerprint + plans + a `2d_<size>` configuration, preprocessed for training.

    2d_<size>: patch size x size, spacing = 2d spacing x (2d patch size / size), so a slice keeps
    its field of view at higher resolution (the paper trains at 896). Both 2d and 2d_<size> are
    preprocessed.
    """
    from rich.console import Console

    from meddinov3.datasets import dataset_folder_name
    from meddinov3.nnunet.paths import set_process_counts

    set_process_counts(num_processes)
    console = Console()
    with _clear_errors():
        from meddinov3.nnunet.plans import highres_name, load_plans, plan_and_preprocess, plan_log_path

        name = dataset_folder_name(dataset)
        console.print(f"nnU-Net's output goes to {plan_log_path(name)}", highlight=False, soft_wrap=True)
        path = plan_and_preprocess(
            dataset, tuple(size), num_processes, batch_size, verify, gpu_memory_gib=gpu_memory,
            reuse_fingerprint=reuse_fingerprint, method=method, backbone=backbone,
        )
        console.print(configurations_table(load_plans(name), ["2d", *map(highres_name, size)]))
    console.print(f"plans: {path}\nnnU-Net's output: {plan_log_path(name)}", highlight=False, soft_wrap=True)


def configurations_table(plans: dict, preprocessed: list[str]):
    """One row per configuration in the plans: patch, spacing, batch size, median shape, preprocessed."""
    from rich.table import Table

    from meddinov3.nnunet.plans import resolved_configuration

    def sides(values, fmt: str) -> str:
        return "x".join(format(float(v), fmt) for v in values)

    table = Table(title=f"{plans['dataset_name']}: configurations in {plans['plans_name']}.json")
    for column in ("config", "patch", "spacing mm", "batch", "median shape", "preprocessed"):
        table.add_column(column, justify="right" if column == "batch" else "left")
    for config_name in plans["configurations"]:
        config = resolved_configuration(plans, config_name)
        table.add_row(
            config_name,
            sides(config["patch_size"], ".0f"),
            sides(config["spacing"], ".3g"),
            str(config["batch_size"]),
            sides(config["median_image_size_in_voxels"], ".0f"),
            "yes" if config_name in preprocessed else "no",
        )
    return table


def train(
    dataset: str = typer.Argument(..., help="Dataset id or name (preprocessed with `meddinov3 plan`)."),
    method: str = typer.Option("meddinov3", help=_METHODS_HELP),
    config: Optional[str] = typer.Option(
        None, "--config", help="nnU-Net configuration (default: 2d_896 for the ViTs, 2d for nnunet)."
    ),
    fold: str = typer.Option("0", help="Cross-validation fold (0-4) or 'all'."),
    weights: Optional[str] = typer.Option(
        None,
        help="Pretrained backbone (required by meddinov3/dinov3/dinov3-single): a checkpoint of any layout, or a "
        "Hugging Face name: an alias (meddinov3-ct3m, dinov3-vitb16, ...; see `meddinov3 weights`), "
        "hf://owner/name[@revision][/file] or owner/name.",
    ),
    backbone: Optional[str] = typer.Option(
        None,
        help="Backbone preset (vitb16, meddinov3_vitb16, ...); default: the weights' own architecture, "
        "else the method's.",
    ),
    backbone_set: list[str] = typer.Option(
        [], "--backbone-set", help="Override a backbone config field, key=value (repeatable), e.g. depth=4."
    ),
    interaction_layers: Optional[str] = typer.Option(
        None, help="Blocks fed to the multi-scale decoder, e.g. 2,5,8,11 (default: quarter ends)."
    ),
    recipe: str = typer.Option(
        "default", help="default: train the method as intended; release: also reproduce the release's slips "
        "(dinov3/dinov3-single/scratch: ViT without storage tokens, eps 1e-6, bf16 RoPE, non-strict loading; "
        "dino-unet: re-randomised frozen patch embedding, RoPE rescale on). See the README's method table.",
    ),
    epochs: Optional[int] = typer.Option(None, min=1, help="Number of epochs (nnU-Net default 1000)."),
    iterations_per_epoch: Optional[int] = typer.Option(
        None, min=1, help="Training iterations per epoch (default 250)."
    ),
    val_iterations_per_epoch: Optional[int] = typer.Option(
        None, min=1, help="Validation iterations per epoch (default 50)."
    ),
    save_every: Optional[int] = typer.Option(
        None, min=1, help="Write checkpoint_latest.pth every N epochs (default 50)."
    ),
    device: str = typer.Option("cuda", help=_DEVICES_HELP),
    precision: Optional[str] = typer.Option(
        None,
        help="auto | bf16 | fp16 | fp32 for the ViT methods. Default: the run's own when resuming, else auto "
        "(bf16 on GPUs that have it, fp16 with a gradient scaler on older GPUs, fp32 elsewhere).",
    ),
    continue_training: bool = typer.Option(False, "--continue", help="Resume from the fold's latest checkpoint."),
    validation_only: bool = typer.Option(False, "--validation-only", help="Only rerun the final validation."),
    validate: bool = typer.Option(
        True, help="Run nnU-Net's validation on the fold's held-out cases at the end."
    ),
    num_gpus: int = typer.Option(1, min=1, help="GPUs for DistributedDataParallel training."),
    num_processes: Optional[int] = typer.Option(
        None, "--num-processes", "-j", min=0, help="Data augmentation workers (0: in the main process)."
    ),
    plans: str = typer.Option("nnUNetPlans", help="Plans identifier."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Train one fold of a method inside nnU-Net (resumable), then validate it.

    Results go to $nnUNet_results/<dataset>/<Trainer>__<plans>__<config>/fold_<fold>/, with
    nnU-Net's checkpoints, log and progress.png. The network spec (method, backbone
    architecture) is stored in that folder's plans.json, so prediction needs no weights file.
    --num-gpus N trains with nnU-Net's DistributedDataParallel (the batch is split over GPUs).
    """
    from meddinov3.nnunet.paths import set_process_counts

    set_process_counts(num_processes)
    with _clear_errors():
        from meddinov3.nnunet.training import TrainingJob, run_training

        job = TrainingJob(
            dataset=dataset,
            method=method,
            configuration=config,
            fold=fold,
            weights=weights,
            backbone=backbone,
            backbone_overrides=_parse_overrides(backbone_set),
            interaction_layers=_parse_layers(interaction_layers),
            recipe=recipe,
            epochs=epochs,
            iterations_per_epoch=iterations_per_epoch,
            val_iterations_per_epoch=val_iterations_per_epoch,
            save_every=save_every,
            device=device,
            precision=precision,
            continue_training=continue_training,
            validation_only=validation_only,
            validate=validate,
            num_gpus=num_gpus,
            plans_identifier=plans,
            show_progress=progress,
        )
        folder = run_training(job)
    typer.echo(f"model: {folder}")


def predict(
    input_path: Path = typer.Option(
        ..., "-i", "--input", help="NIfTI file, folder of NIfTI files, or DICOM series folder."
    ),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder for the label maps."),
    model: Path = typer.Option(..., "-m", "--model", help="Trained model folder (<Trainer>__<plans>__<config>)."),
    fold: list[str] = typer.Option(["0"], "--fold", help="Fold(s) to ensemble (repeatable; 'all' for fold_all)."),
    checkpoint: str = typer.Option("checkpoint_final.pth", help="Checkpoint file name inside each fold."),
    device: str = typer.Option("auto", help=_DEVICES_HELP),
    precision: Optional[str] = typer.Option(
        None,
        help="auto | bf16 | fp16 | fp32. Default: what the model was trained at (fp16 where a GPU lacks "
        "bf16); pass fp32 on CPUs without bfloat16 units, where bf16 is emulated slowly.",
    ),
    overwrite: bool = typer.Option(False, help="Redo cases whose output already exists."),
    mirroring: bool = typer.Option(True, help="Test-time mirroring (nnU-Net default)."),
    step_size: float = typer.Option(0.5, min=0.1, max=1.0, help="Sliding-window step as a fraction of the patch."),
    num_processes: Optional[int] = typer.Option(None, "--num-processes", "-j", min=1, help="nnU-Net worker threads."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Segment volumes with a trained model; label maps keep each input's exact geometry."""
    from meddinov3.nnunet.paths import set_process_counts

    set_process_counts(num_processes)
    with _clear_errors():
        from meddinov3.nnunet.prediction import predict as run_prediction

        folds = [fold_value(f) for f in fold]
        written = run_prediction(
            input_path, output, model, folds, checkpoint, device, overwrite, mirroring, step_size, progress, precision
        )
    for path in written:
        typer.echo(f"wrote {path}")
