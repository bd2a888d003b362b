"""`meddinov3 probe`: how good are a backbone's frozen features for CT segmentation?"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from meddinov3.cli_errors import errors_as_one_line
from meddinov3.probe.config import FEATURE_CACHE


def probe(
    dataset: str = typer.Argument(
        ..., help="nnU-Net raw dataset: a folder, or an id / name under $nnUNet_raw. Needs imagesTs + labelsTs."
    ),
    weights: list[str] = typer.Option(
        ..., "--weights", "-w", help="Backbone weights, any layout load_backbone reads (repeatable)."
    ),
    output: Path = typer.Option(Path("probe_out"), "--output", "-o", help="Folder for results.json and the chart."),
    size: int = typer.Option(224, "--size", min=16, help="Slice side in px, a multiple of the patch size (paper: 896)."),
    layers: str = typer.Option(
        "last", "--layers", help="last: last block's patch tokens; multiscale: blocks 2,5,8,11 concatenated."
    ),
    max_train_slices: int = typer.Option(512, "--max-train-slices", min=1, help="Training slices drawn from imagesTr."),
    steps: int = typer.Option(1000, "--steps", min=1, help="Training steps of the linear head."),
    lr: float = typer.Option(3e-2, "--lr", min=0.0, help="Peak AdamW learning rate of the linear head."),
    seed: int = typer.Option(0, "--seed", help="Slices drawn, batch order and the random twin's weights."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA, else MPS, else CPU), cuda, cuda:N, mps or cpu."),
    random_baseline: bool = typer.Option(
        True, "--random-baseline/--no-random-baseline", help="Also probe a randomly initialised twin of each architecture."
    ),
    cache_dir: Optional[Path] = typer.Option(
        None, "--cache-dir", help=f"Feature cache (default: OUTPUT/{FEATURE_CACHE}); reruns reuse it."
    ),
    cache: bool = typer.Option(True, "--cache/--no-cache", help="Keep features on disk for reruns."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Dense linear evaluation (DINOv3's) of frozen backbones on CT: a linear head on patch features
    of training slices, DSC per label on the held-out cases, against a random-init twin.

    Slices are axial, clipped to [-1000, 1000] HU and normalised like MedDINOv3's pretraining.
    Writes OUTPUT/results.json and OUTPUT/probe_dsc.png and prints the table.
    """
    from rich.console import Console

    errors = Console(stderr=True)
    with errors_as_one_line(ValueError, console=errors):
        from meddinov3.probe.backbones import load_compared
        from meddinov3.probe.config import ProbeConfig
        from meddinov3.probe.preparation import prepare_probe
        from meddinov3.devices import pick_device
        from meddinov3.probe.report import results_table, write_outputs
        from meddinov3.probe.runner import run_probe

        config = ProbeConfig(size=size, layers=layers, max_train_slices=max_train_slices, steps=steps, lr=lr, seed=seed)  # type: ignore[arg-type]
        torch_device = pick_device(device)
        data = prepare_probe(dataset, config, show_progress=progress)
        if data.dataset.channel_name.upper() != "CT":
            errors.print(f"[yellow]note:[/yellow] channel 0 is {data.dataset.channel_name!r}, not CT; "
                         "the probe normalises intensities as CT Hounsfield units", highlight=False)
        backbones, baselines = load_compared(weights, random_baseline, seed, torch_device)
        folder = (cache_dir or output / FEATURE_CACHE) if cache else None
        result = run_probe(data, backbones, device=torch_device, cache_dir=folder, show_progress=progress)
        sources = {name: {"weights": w, "architecture": backbones[name].config.to_dict()}
                   for name, w in zip(backbones, weights)}
        for name, twin in baselines.items():
            sources.setdefault(twin, {"weights": None, "random_init_seed": seed, "twin_of": name,
                                      "architecture": backbones[twin].config.to_dict()})
        written = write_outputs(result, output, baselines, sources)
    Console().print(results_table(result, baselines))
    for name, scores in result.scores.items():
        errors.print(f"{name}: features computed for {scores.computed_slices} slices, "
                     f"{scores.reused_slices} from the cache", highlight=False)
    for path in written:
        errors.print(f"wrote {path}", highlight=False)
