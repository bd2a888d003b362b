"""`meddinov3 evaluate`: DSC, NSD and HD95 of a prediction folder, the release's protocol."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer

from meddinov3.cli_errors import errors_as_one_line


def evaluate(
    pred: Path = typer.Option(..., "--pred", help="Folder of predicted label images."),
    ref: Path = typer.Option(..., "--ref", help="Folder of reference label images (same file names)."),
    dataset_json: Optional[Path] = typer.Option(
        None, "--dataset-json", help="nnU-Net dataset.json: label names, allowed labels, file ending."
    ),
    tolerance: float = typer.Option(1.0, "--tolerance", min=0.0, help="NSD tolerance in mm (paper: 1)."),
    workers: Optional[int] = typer.Option(
        None, "--workers", "-j", min=1, help="Cases scored in parallel (default: min(CPU count, 8))."
    ),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", help="Folder for evaluation_per_case.csv and evaluation_summary.json"
        " (default: the prediction folder)."
    ),
) -> None:
    """Score every reference case against its prediction; write a per-case CSV and a JSON summary.

    DSC, NSD at --tolerance mm and HD95 as MONAI defines them, in the reference's voxel spacing.
    A label absent from a reference is NaN for that case and left out of the means.
    An empty prediction scores DSC 0, NSD 0 and HD95 NaN (MONAI's values).
    The last row is the mean over labels of per-label means, as in the paper.
    """
    from rich.console import Console

    from meddinov3.evaluation.pairing import check_folders

    errors = Console(stderr=True)
    with errors_as_one_line(console=errors):
        check_folders(pred, ref, tolerance)
    from meddinov3.evaluation.folder import evaluate_folder
    from meddinov3.evaluation.report import print_table

    with errors_as_one_line(console=errors), _progress_bar(errors) as progress:
        report = evaluate_folder(pred, ref, dataset_json, tolerance, workers, output, progress)
    if report.unmatched_predictions:
        errors.print(
            f"[yellow]note:[/yellow] {len(report.unmatched_predictions)} prediction(s) without a reference"
            f" were not scored: {', '.join(report.unmatched_predictions[:10])}"
        )
    print_table(report.summary, Console())
    for path in report.written:
        errors.print(f"wrote {path}", highlight=False)


@contextmanager
def _progress_bar(console) -> Iterator[Callable[[int], Callable[[str], None]]]:
    """Yield the callback factory `evaluate_folder` takes, drawing a rich bar on `console` once
    scoring starts (a failed check before that leaves the error line alone on the console)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("scoring cases"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    progress = Progress(*columns, console=console, transient=True)

    def start(total: int) -> Callable[[str], None]:
        progress.start()
        task = progress.add_task("cases", total=total)
        return lambda case: progress.advance(task)

    try:
        yield start
    finally:
        progress.stop()
