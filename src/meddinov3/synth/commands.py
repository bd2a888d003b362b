"""`meddinov3 synth`: a synthetic abdominal CT dataset in nnU-Net v2 raw format."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def parse_shape(text: Optional[str]) -> Optional[tuple[int, int, int]]:
    if text is None:
        return None
    parts = text.lower().replace("x", ",").split(",")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError as error:
        raise typer.BadParameter(f"--shape must be Z,Y,X integers, got {text!r}") from error
    if len(shape) != 3 or min(shape) < 8:
        raise typer.BadParameter(f"--shape must be three sizes >= 8 (Z,Y,X), got {text!r}")
    return shape


def synth(
    out: Path = typer.Argument(
        ..., help="Dataset folder, named DatasetXXX_Name, e.g. $nnUNet_raw/Dataset501_SynthAbdomen."
    ),
    cases: int = typer.Option(10, "--cases", min=1, help="Training cases (imagesTr/labelsTr)."),
    test_cases: int = typer.Option(0, "--test-cases", min=0, help="Held-out cases (imagesTs/labelsTs)."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same data."),
    size: str = typer.Option(
        "small", "--size", help="small: 128-192 px in-plane, 20-60 slices (quick on CPU); "
        "full: 512 px in-plane, adult field of view."
    ),
    shape: Optional[str] = typer.Option(None, "--shape", help="Exact Z,Y,X voxel shape, e.g. 80,512,512."),
    workers: int = typer.Option(1, "--workers", "-j", min=1, help="Worker processes."),
) -> None:
    """Generate synthetic abdominal CT volumes with organ labels (liver, spleen, kidneys, aorta,
    stomach, vertebrae), anisotropic spacing and realistic Hounsfield units."""
    from rich.progress import Progress

    from meddinov3.folders import writable_folder
    from meddinov3.synth.dataset import SynthSpec, check_dataset_folder, write_dataset

    if size not in ("small", "full"):
        raise typer.BadParameter(f"--size must be small or full, got {size!r}")
    spec = SynthSpec(cases, test_cases, seed, size, parse_shape(shape))  # type: ignore[arg-type]
    check_dataset_folder(out)
    writable_folder(out, "OUT")
    with Progress() as progress:
        task = progress.add_task("synth cases", total=cases + test_cases)
        write_dataset(out, spec, workers, lambda index, written: progress.advance(task))
    typer.echo(f"wrote {cases} training + {test_cases} test cases to {out}")
