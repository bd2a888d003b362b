"""`meddinov3 curate`: build a CT-3M-style slice corpus from NIfTI files and DICOM folders."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def curate(
    inputs: Optional[List[Path]] = typer.Argument(
        None, help="NIfTI/MHA/NRRD files, .npy slices already at corpus geometry, or folders "
        "(searched recursively, DICOM series included)."
    ),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Corpus folder (created; reruns resume)."),
    workers: int = typer.Option(1, "--workers", "-j", min=1, help="Worker processes."),
    spacing: float = typer.Option(0.45, help="In-plane resampling spacing in mm (paper: 0.45)."),
    size: int = typer.Option(256, min=16, help="Stored slice side in pixels (paper: 256)."),
    check_ct: bool = typer.Option(
        True, "--check-ct/--no-check-ct", help="Skip volumes whose values do not look like HU."
    ),
    retry_skipped: bool = typer.Option(
        False, help="Re-read sources a previous run skipped instead of reusing the verdict."
    ),
    exclude: List[str] = typer.Option(
        [], "--exclude", help="nnU-Net raw dataset (folder, or id/name under $nnUNet_raw) whose cases "
        "(imagesTr and imagesTs) the corpus must not contain, recognised by their voxel data whatever "
        "the file name or format; repeatable. Left-out sources are listed in skipped.jsonl."
    ),
    check: Optional[Path] = typer.Option(
        None, "--check", help="Report which volumes of this existing corpus are cases of the --exclude "
        "datasets, changing nothing; exit code 1 when there are any."
    ),
) -> None:
    """Resample every axial slice to 0.45 mm in-plane, resize to 256 x 256, store int16 HU shards."""
    from meddinov3.curate.exclusion_commands import benchmark_folders, run_check
    from meddinov3.errors import InputError

    if check is not None:
        if inputs or out is not None:
            raise InputError("--check reads an existing corpus: give no inputs and no --out")
        if not exclude:
            raise InputError("--check needs the benchmark dataset(s) to look for: --exclude DATASET")
        if run_check(check, benchmark_folders(exclude), workers):
            raise typer.Exit(code=1)
        return
    _build(inputs or [], out, workers, spacing, size, check_ct, retry_skipped, exclude)


def _build(
    inputs: list[Path], out: Path | None, workers: int, spacing: float, size: int, check_ct: bool,
    retry_skipped: bool, exclude: list[str],
) -> None:
    from meddinov3.curate.config import CurateConfig
    from meddinov3.curate.exclusion_commands import benchmark_folders
    from meddinov3.curate.progress import run_with_progress
    from meddinov3.errors import InputError
    from meddinov3.folders import writable_folder

    if not inputs or out is None:
        raise InputError("curate needs the INPUTS to read and --out CORPUS (or --check CORPUS --exclude DATASET)")
    if spacing <= 0:
        raise InputError(f"--spacing must be positive, got {spacing}")
    missing = [str(p) for p in inputs if not p.exists()]
    if missing:
        raise InputError(f"curate input does not exist: {', '.join(missing)}")
    writable_folder(out, "--out")
    config = CurateConfig(spacing_mm=spacing, size=size, check_ct=check_ct, exclude=benchmark_folders(exclude))
    summary = run_with_progress([str(p) for p in inputs], str(out), config, workers, retry_skipped)
    if summary.count("failed"):
        raise typer.Exit(code=1)
