"""`meddinov3 features`: PCA and patch-similarity maps of a CT slice."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from meddinov3.cli_errors import errors_as_one_line


def check_options(size: int, out: Path) -> None:
    from meddinov3.errors import InputError
    from meddinov3.folders import writable_folder

    if size % 16:
        raise InputError(f"--size must be a multiple of 16, got {size}")
    writable_folder(out, "--out")


def features(
    weights: Optional[str] = typer.Option(
        None, help="Backbone checkpoint (any layout load_backbone reads) or Hub name (see `meddinov3 weights`)."
    ),
    image: Optional[Path] = typer.Option(
        None, help="CT slice: .npy (HU), NIfTI or other volume, DICOM file or series folder. Default: bundled real slice."
    ),
    slice_index: Optional[int] = typer.Option(None, "--slice", help="Axial slice of a volume (default: middle)."),
    size: int = typer.Option(512, help="Resize the slice to size x size (a multiple of 16; the paper goes to 2048)."),
    out: Path = typer.Option(Path("features_out"), help="Output folder for the PNGs."),
    points: int = typer.Option(3, help="Number of query patches for the similarity maps."),
    device: str = typer.Option("auto", help="auto, cuda, mps or cpu (auto: CUDA, else MPS, else CPU)."),
) -> None:
    """PCA map (first three components as RGB, body-masked) and patch-similarity maps of a CT slice."""
    from meddinov3.viz.ct_slice import read_ct_slice

    # The values, the output folder and the slice are checked before torch loads and the model is built.
    check_options(size, out)
    ct_slice = read_ct_slice(image, slice_index)

    from rich.console import Console

    from meddinov3.backbone import build_backbone, load_backbone
    from meddinov3.devices import pick_device
    from meddinov3.viz.features import (
        default_queries,
        foreground_patches,
        patch_features,
        pca_rgb,
        resize_slice,
        similarity_map,
    )
    from meddinov3.viz.figures import pca_figure, save_figure, similarity_figure

    console = Console()
    with errors_as_one_line(ValueError):
        torch_device = pick_device(device)
    if weights is None:
        console.print(
            "[bold yellow]No --weights given: using a RANDOMLY INITIALISED MedDINOv3 ViT-B/16. "
            "The maps show the pipeline, not learnt anatomy.[/]"
        )
        model, label = build_backbone("meddinov3_vitb16"), "random weights"
    else:
        model = load_backbone(weights)
        label = Path(weights).name if Path(weights).exists() else weights
    model = model.to(torch_device).eval()
    hu = resize_slice(ct_slice, size)
    feats = patch_features(model, hu)
    mask = foreground_patches(hu, model.patch_size)
    queries = default_queries(mask, points)
    title = f"{label}, {size}x{size}"
    written = [
        save_figure(pca_figure(hu, pca_rgb(feats, mask), title), out / "pca.png"),
        save_figure(
            similarity_figure(hu, [similarity_map(feats, q) for q in queries], queries, model.patch_size, title),
            out / "similarity.png",
        ),
    ]
    for path in written:
        console.print(f"wrote {path}")
