"""`meddinov3 curate`: build a CT-3M-style slice corpus from NIfTI files and DICOM folders."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer


def curate(
    inputs: List[Path] = typer.Argument(
        ..., help="NIfTI/MHA/NRRD files, .npy slices already at corpus geometry, or folders "
        "(searched recursively, DICOM series included)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Corpus folder (created; reruns resume)."),
    workers: int = typer.Option(1, "--workers", "-j", min=1, help="Worker processes."),
    spacing: float = typer.Option(0.45, help="In-plane resampling spacing in mm (paper: 0.45)."),
    size: int = typer.Option(256, min=16, help="Stored slice side in pixels (paper: 256)."),
    check_ct: bool = typer.Option(
        True, "--check-ct/--no-check-ct", help="Skip volumes whose values do not look like HU."
    ),
    retry_skipped: bool = typer.Option(
        False, help="Re-read sources a previous run skipped instead of reusing the verdict."
    ),
) -> None:
    """Resample every axial slice to 0.45 mm in-plane, resize to 256 x 256, store int16 HU shards."""
    from meddinov3.curate.config import CurateConfig
    from meddinov3.curate.progress import run_with_progress
    from meddinov3.errors import InputError
    from meddinov3.folders import writable_folder

    if spacing <= 0:
        raise InputError(f"--spacing must be positive, got {spacing}")
    missing = [str(p) for p in inputs if not p.exists()]
    if missing:
        raise InputError(f"curate input does not exist: {', '.join(missing)}")
    writable_folder(out, "--out")
    config = CurateConfig(spacing_mm=spacing, size=size, check_ct=check_ct)
    summary = run_with_progress([str(p) for p in inputs], str(out), config, workers, retry_skipped)
    if summary.count("failed"):
        raise typer.Exit(code=1)
