"""`meddinov3 convert`: a public release folder (AMOS22, BTCV, KiTS23, LiTS) -> nnU-Net raw dataset."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from meddinov3.cli_errors import errors_as_one_line
from meddinov3.folders import writable_folder


def convert(
    release: str = typer.Argument(..., help="Release layout: amos22, btcv, kits23 or lits."),
    raw_dir: Path = typer.Argument(..., help="The extracted release folder."),
    dataset_id: int = typer.Argument(..., min=1, max=999, help="nnU-Net dataset id (DatasetXXX_Name)."),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", help="nnU-Net raw folder to write into (default: $nnUNet_raw)."
    ),
    modality: Optional[str] = typer.Option(
        None, help="amos22 only: all (default; CT and MRI, as in the paper), ct or mri."
    ),
    test: bool = typer.Option(True, "--test/--no-test", help="Also copy the unlabelled test images (imagesTs)."),
    overwrite: bool = typer.Option(False, help="Rewrite cases already converted (default: resume, keep them)."),
) -> None:
    """Copy images and labels into nnU-Net's layout and write dataset.json (labels, channel, CT/MRI).

    Images are copied unchanged; every label file is checked against the release's label set
    and its image grid. Re-running resumes an interrupted conversion.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from meddinov3.convert.registry import release_plan
    from meddinov3.convert.writer import write_dataset

    errors = Console(stderr=True)
    raw_root = output if output is not None else _raw_root_from_environment()
    with errors_as_one_line(console=errors):
        writable_folder(raw_root, "--output" if output is not None else "$nnUNet_raw")
        plan = release_plan(release, raw_dir, **_release_options(release, modality, test))
        columns = (TextColumn("converting cases"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=errors, transient=True) as progress:
            task = progress.add_task("cases", total=len(plan.training) + len(plan.test))
            folder = write_dataset(plan, raw_root, dataset_id, overwrite, lambda case: progress.advance(task))
    errors.print(
        f"wrote {folder} ({len(plan.training)} labelled, {len(plan.test)} test cases;"
        f" channel {plan.description.channel_names['0']}, {len(plan.description.labels) - 1} labels)",
        highlight=False,
    )


def _raw_root_from_environment() -> Path:
    value = os.environ.get("nnUNet_raw")
    if not value:
        raise typer.BadParameter("set $nnUNet_raw or pass --output FOLDER", param_hint="--output")
    return Path(value)


def _release_options(release: str, modality: str | None, test: bool) -> dict[str, object]:
    key = release.lower()
    options: dict[str, object] = {}
    if modality is not None:
        if key != "amos22":
            raise typer.BadParameter("applies to amos22 only", param_hint="--modality")
        options["modality"] = modality.lower()
    if key != "kits23":  # KiTS23 publishes no test images, so there is nothing to include or leave out.
        options["include_test"] = test
    return options
