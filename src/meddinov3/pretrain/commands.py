"""`meddinov3 pretrain`: run or resume one stage of the three-stage recipe."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def check_paths(config) -> None:
    """The corpus, the weights to start from, the Gram teacher and the output folder, checked
    before the models are built. Weights named on the Hub are fetched here (or found in its cache)."""
    from meddinov3.backbone.hub import resolve_weights
    from meddinov3.curate.shards import MANIFEST_FILE
    from meddinov3.errors import InputError
    from meddinov3.folders import writable_folder
    from meddinov3.pretrain.config import RANDOM_INIT

    corpus = config.data.corpus
    if corpus and not (Path(corpus) / MANIFEST_FILE).is_file():
        raise InputError(
            f"data.corpus {corpus}: not a curated corpus (no {MANIFEST_FILE}); create one with `meddinov3 curate`"
        )
    init = config.model.init
    if init != RANDOM_INIT and not resolve_weights(init).exists():
        raise InputError(f"model.init {init}: no such file or folder (or model.init=random)")
    teacher = config.gram.teacher
    if config.gram.enabled and teacher and not resolve_weights(teacher).exists():
        raise InputError(
            f"gram.teacher {teacher}: no such file; stage 1 keeps its EMA teacher at the iterations of "
            "run.keep_teacher_at (snapshots/iteration_N/teacher_checkpoint.pth); gram.teacher=null takes the "
            "teacher model.init starts from"
        )
    writable_folder(config.run.output_dir, "run.output_dir")


def pretrain(
    config: str = typer.Option(
        ...,
        "--config",
        "-c",
        help="YAML file, or a preset name: stage1, stage2, stage3, tiny.",
    ),
    overrides: Optional[List[str]] = typer.Argument(
        None, help="Config overrides as section.key=value, e.g. optim.lr=1e-4 data.corpus=/data/ct3m."
    ),
    print_config: bool = typer.Option(False, "--print-config", help="Print the resolved config and exit."),
) -> None:
    """Self-supervised DINOv3 pretraining on CT slices (stage 1, 2 or 3).

    Multi-GPU / multi-node: torchrun --nproc_per_node=8 -m meddinov3.cli pretrain --config stage1 ...
    Re-running the same command resumes from OUTPUT_DIR/checkpoint.pth; the final teacher is
    written to OUTPUT_DIR/export/ (MedDINOv3 layout + safetensors).
    """
    import logging

    import yaml

    from meddinov3.errors import InputError
    from meddinov3.pretrain.config import load_config

    try:
        resolved = load_config(config, overrides or [])
    except (ValueError, FileNotFoundError) as err:
        raise InputError(f"--config / overrides: {err}") from None
    if print_config:
        typer.echo(yaml.safe_dump(resolved.to_dict(), sort_keys=False))
        return
    check_paths(resolved)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from meddinov3.pretrain.loop import train

    result = train(resolved)
    if result.exported:
        for name, path in result.exported.items():
            typer.echo(f"{name}: {path}")
    elif result.iteration < resolved.optim.iterations:
        typer.echo(f"stopped at iteration {result.iteration} of {resolved.optim.iterations}; rerun to resume")
