"""Demo step 3: a short stage-1 pretraining (DINO + iBOT + KoLeo, EMA teacher) on the corpus,
and the randomly initialised twin of the same ViT that fine-tuning compares against."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from meddinov3.demo.config import DemoConfig
from meddinov3.demo.steps import StepContext
from meddinov3.demo.terminal import polled
from meddinov3.demo.workspace import Workspace
from meddinov3.pretrain.metrics import METRICS_NAME, read_metrics


def pretrain_settings(config: DemoConfig, corpus: Path, output: Path) -> dict[str, Any]:
    """`meddinov3 pretrain --config <config.pretrain_recipe>` at the demo's backbone, crops,
    batch and length; every learning setting (heads, augmentation, schedules) is the recipe's."""
    from meddinov3.pretrain.config import load_config

    settings = load_config(config.pretrain_recipe).to_dict()
    iterations = config.pretrain_iterations
    on_gpu = config.device == "cuda"
    changes = {
        "data": {"corpus": str(corpus), "bundled_slice": False, "synthetic_slices": 0,
                 "num_workers": 4 if on_gpu else 0, "seed": config.seed},
        "crops": {"n_local": config.n_local_crops, "global_sizes": [config.global_crop],
                  "local_sizes": [config.local_crop]},
        "model": {"init": "random", "arch": config.backbone_preset, "arch_overrides": config.backbone_overrides(),
                  "head_prototypes": config.head_prototypes, "head_hidden_dim": config.head_hidden_dim,
                  "head_bottleneck_dim": config.head_bottleneck_dim},
        "optim": {"iterations": iterations, "global_batch_size": config.pretrain_batch_size,
                  "lr": config.pretrain_lr, "min_lr": config.pretrain_lr / 100},
        "run": {"output_dir": str(output), "checkpoint_every": max(10, iterations // 4),
                "log_every": 10, "device": config.device, "seed": config.seed},
    }
    for section, values in changes.items():
        settings[section].update(values)
    return settings


def pretrain(context: StepContext) -> dict[str, Any]:
    from meddinov3.pretrain.config import config_from_dict
    from meddinov3.pretrain.loop import train

    workspace = context.workspace
    iterations = workspace.config.pretrain_iterations
    settings = pretrain_settings(workspace.config, workspace.corpus, workspace.pretrain)
    config = config_from_dict(settings)
    metrics_path = workspace.pretrain / METRICS_NAME
    context.expect(iterations, "iterations")

    def poll() -> tuple[int, str]:
        metrics = read_metrics(metrics_path)
        return len(metrics), f"loss {metrics[-1]['loss']:.3f}" if metrics else "building the model"

    with polled(context.progress, context.task, poll):
        result = train(config)
    if result.exported is None:
        raise RuntimeError(f"pretraining stopped at iteration {result.iteration} of {iterations} without an export")
    metrics = read_metrics(metrics_path)
    return {
        "settings": settings,
        "iterations": result.iteration,
        "first_loss": metrics[0]["loss"],
        "last_loss": metrics[-1]["loss"],
        "backbone": str(result.exported["backbone"]),
    }


def save_random_backbone(config: DemoConfig, path: Path) -> Path:
    """The pretrained ViT's architecture with random weights (seeded), in the same export format."""
    import torch

    from meddinov3.backbone import build_backbone
    from meddinov3.backbone.export import save_backbone

    torch.manual_seed(config.seed)
    model = build_backbone(config.backbone_preset, drop_path_rate=0.0, **config.backbone_overrides())
    return save_backbone(model, path)


def random_backbone(workspace: Workspace) -> Path:
    """The random twin's file, written by whichever step needs it first (the probe, or the
    random-init fine-tuning): the seed makes every writing identical."""
    path = workspace.random_backbone
    if not path.is_file():
        save_random_backbone(workspace.config, path)
    return path


def pretrain_outputs(workspace: Workspace) -> list[Path]:
    return [workspace.pretrain]
