"""`meddinov3 demo`: the whole pipeline on synthetic CT and the bundled real slice, one command."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from meddinov3.cli_errors import errors_as_one_line


def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", "-o", help="Output folder (reruns resume where they stopped)."),
    preset: Optional[str] = typer.Option(
        None, "--preset", help="small: about 9 minutes on 2 idle CPU cores (default); gpu: more data, a wider ViT "
        "and longer schedules on a CUDA GPU (default with --gpu)."
    ),
    gpu: bool = typer.Option(False, "--gpu", help="Run on the CUDA GPU (implies --preset gpu unless one is given)."),
    force: bool = typer.Option(False, "--force", help="Redo every step, deleting earlier outputs in --out."),
    seed: Optional[int] = typer.Option(None, help="Seed of the synthetic data and the training runs."),
    pretrain_iterations: Optional[int] = typer.Option(
        None, "--pretrain-iterations", min=1, help="Stage-1 pretraining iterations (small preset: 600, about 3 "
        "minutes on 2 idle cores; 1800 is where the few-label gain shows, see the README)."
    ),
    few_label_epochs: Optional[int] = typer.Option(
        None, "--few-label-epochs", min=1, help="Epochs of each few-label fine-tuning run, the same for both inits."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show library output instead of logging it to OUT/logs/."),
) -> None:
    """Synthesize CT -> curate -> pretrain a ViT -> nnU-Net plan -> fine-tune from the pretrained and
    from a random backbone, on all and on few labelled cases -> predict held-out cases -> DSC/NSD ->
    feature maps -> OUT/report.html.

    Needs no downloads and no nnU-Net environment variables (its folders go under --out).
    """
    from meddinov3.demo.config import demo_config
    from meddinov3.demo.pipeline import run_demo
    from meddinov3.demo.terminal import terminal_console

    console, can_capture = terminal_console()
    with errors_as_one_line(ValueError, console=console):
        config = demo_config(preset or ("gpu" if gpu else "small"), seed=seed, pretrain_iterations=pretrain_iterations,
                             few_label_epochs=few_label_epochs)
        if gpu:
            config = config.replace(device="cuda")
        check_device(config.device)
        run_demo(out, config, force, console, capture=can_capture and not verbose)


def check_device(device: str) -> None:
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--gpu / --preset gpu need a CUDA GPU, and torch sees none; run without --gpu")
