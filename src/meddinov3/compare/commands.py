"""`meddinov3 compare`: the paper's Table 2 on one dataset, one command."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from meddinov3.cli_errors import errors_as_one_line

DEFAULT_METHODS = "nnunet,segformer,dino-unet,meddinov3"


def _parse_weights(items: list[str]) -> dict[str, str]:
    weights: dict[str, str] = {}
    for item in items:
        method, sep, path = item.partition("=")
        if not sep or not method or not path:
            raise typer.BadParameter(f"expected METHOD=PATH, got {item!r}", param_hint="--weights")
        weights[method.strip()] = path.strip()
    return weights


def compare(
    dataset: str = typer.Argument(..., help="Dataset id or name (preprocessed with `meddinov3 plan`)."),
    methods: str = typer.Option(DEFAULT_METHODS, help="Comma-separated `meddinov3 train --method` names."),
    fold: int = typer.Option(0, min=0, max=4, help="Cross-validation fold (paper: 0, an 80/20 split)."),
    weights: List[str] = typer.Option(
        [], "--weights", help="METHOD=WEIGHTS pretrained backbone (repeatable): a path or Hub name, e.g. "
        "meddinov3=meddinov3-ct3m, dino-unet=dinov3_vitb16.pth (see `meddinov3 weights`)."
    ),
    config: Optional[str] = typer.Option(
        None, "--config", help="One nnU-Net configuration for every method (default: each method's own)."
    ),
    recipe: str = typer.Option(
        "default", help="default: each method as intended; release: also the release's slips, to reproduce "
        "Table 2 as printed (see `meddinov3 train --help` and the README's method table)."
    ),
    epochs: Optional[int] = typer.Option(None, min=1, help="Epochs per training (nnU-Net default 1000)."),
    iterations_per_epoch: Optional[int] = typer.Option(None, min=1, help="Iterations per epoch (default 250)."),
    val_iterations_per_epoch: Optional[int] = typer.Option(None, min=1, help="Validation iterations per epoch."),
    device: str = typer.Option("cuda", help="cuda, cpu or mps."),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", help="Folder for the table and plot (default: $nnUNet_results/<dataset>/comparison_fold<k>)."
    ),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", min=1, help="Evaluation processes."),
    num_processes: Optional[int] = typer.Option(
        None, "--num-processes", min=0, help="nnU-Net data augmentation workers (0: in the main process)."
    ),
    progress: bool = typer.Option(True, help="Show training progress bars."),
    train_cases: Optional[str] = typer.Option(
        None, "--train-cases", help="Label efficiency: train every method on nested subsets of the fold's "
        "training cases, e.g. 1,2,5,all (numbers of labelled cases; all = the whole fold), scored on the "
        "same held-out cases; writes label_efficiency.md/.csv/.png and subsets.json "
        "(default folder: $nnUNet_results/<dataset>/label_efficiency_fold<k>)."
    ),
    seed: int = typer.Option(0, help="Seed that draws the --train-cases subsets (the same for every method)."),
) -> None:
    """Train (or reuse) each method on a fold, score its held-out cases, tabulate and plot them.

    DSC and NSD (1 mm) per class and as the mean over classes, written to comparison.md,
    comparison.csv and comparison.png with the paper's Table 2 numbers alongside when the
    dataset is one of the paper's (AMOS22, KiTS23, LiTS, BTCV), and each method's training
    recipe as it trained (optimiser, learning rates, weight decay, betas or momentum, schedule,
    precision, batch, patch, recipe switch) in comparison.md and training_recipes.json.
    Finished trainings and evaluations are reused; interrupted trainings resume.
    With --train-cases, the label-efficiency table and plot instead: DSC and NSD per method and
    number of labelled training cases, with their spread over the held-out cases.
    """
    from meddinov3.nnunet.paths import set_process_counts

    set_process_counts(num_processes)

    from rich.console import Console

    from meddinov3.compare.runner import ComparisonJob, run_comparison

    errors = Console(stderr=True)
    job = ComparisonJob(
        dataset=dataset,
        methods=[m.strip() for m in methods.split(",") if m.strip()],
        fold=fold,
        configuration=config,
        weights=_parse_weights(weights),
        recipe=recipe,
        epochs=epochs,
        iterations_per_epoch=iterations_per_epoch,
        val_iterations_per_epoch=val_iterations_per_epoch,
        device=device,
        output=output,
        eval_workers=workers,
        show_progress=progress,
    )

    def report(line: str) -> None:
        errors.print(line, highlight=False, soft_wrap=True)

    with errors_as_one_line(ValueError, console=errors):
        if train_cases is not None:
            from meddinov3.compare.label_efficiency import run_label_efficiency
            from meddinov3.compare.subsets import parse_counts

            efficiency = run_label_efficiency(job, parse_counts(train_cases), seed, report=report)
            typer.echo(efficiency.markdown.read_text(encoding="utf-8"))
            for path in (efficiency.subsets, efficiency.markdown, efficiency.csv, efficiency.plot):
                errors.print(f"wrote {path}", highlight=False, soft_wrap=True)
            return
        outputs = run_comparison(job, report=report)
    typer.echo(outputs.markdown.read_text(encoding="utf-8"))
    for path in (outputs.markdown, outputs.csv, outputs.plot, outputs.recipes):
        errors.print(f"wrote {path}", highlight=False, soft_wrap=True)
