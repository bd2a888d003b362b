"""Demo step 4: are the pretrained features any better than random ones? DINOv3's dense linear
probe (`meddinov3 probe`) on the demo dataset: the exported backbone against its random twin (the
backbone the random-init fine-tuning starts from), frozen, each with its own linear head trained
on the same training slices, scored per organ on the held-out cases.

Fine-tuning for a few CPU minutes lets a random ViT catch up on synthetic organs; the probe reads
the features as pretraining left them, so it is where pretraining shows (or fails to show) a gain.
Features are cached under OUT/probe/feature_cache, so an interrupted step recomputes only the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from meddinov3.demo.pretraining import random_backbone
from meddinov3.demo.steps import StepContext
from meddinov3.demo.workspace import INITS, Workspace
from meddinov3.probe.config import FEATURE_CACHE


def probe_config(config) -> Any:
    from meddinov3.probe import ProbeConfig

    return ProbeConfig(size=config.probe_size, layers=config.probe_layers, max_train_slices=config.probe_train_slices,
                       steps=config.probe_steps, seed=config.seed)


def probe(context: StepContext) -> dict[str, Any]:
    from meddinov3.backbone import load_backbone
    from meddinov3.probe import prepare_probe, run_probe
    from meddinov3.probe.report import differences, write_outputs

    workspace = context.workspace
    config = workspace.config
    weights = {"pretrained": workspace.pretrained_backbone, "random": random_backbone(workspace)}
    context.expect(len(INITS) + 1, "reading labels")
    data = prepare_probe(workspace.raw_dataset, probe_config(config))
    context.advance()
    results = []
    # One backbone per call, so that the bar moves between them; each gets its own head with the
    # same seed and slices either way.
    for init in INITS:
        context.advance(0, status=f"{init} backbone")
        backbone = load_backbone(weights[init]).to(config.device).eval()
        results.append(run_probe(data, {init: backbone}, device=config.device,
                                 cache_dir=workspace.probe / FEATURE_CACHE))
        context.advance()
    result = results[0]
    for other in results[1:]:
        result.scores.update(other.scores)
    twins = {"pretrained": "random"}
    sources = {"pretrained": {"weights": str(weights["pretrained"])},
               "random": {"weights": str(weights["random"]), "random_init_seed": config.seed, "twin_of": "pretrained"}}
    write_outputs(result, workspace.probe, twins, sources)
    names = result.label_names
    return {
        "config": result.config.to_dict(),
        "train_slices": result.train_slices,
        "test_cases": result.test_cases,
        "mean_dice": {init: result.scores[init].mean_dice for init in INITS},
        "dice": {init: {names[label]: value for label, value in result.scores[init].dice.items()} for init in INITS},
        "gain": differences(result, twins)["pretrained"]["mean_dice"],
        "seconds": {init: result.scores[init].seconds for init in INITS},
        "figure": str(probe_figure(workspace)),
    }


def probe_figure(workspace: Workspace) -> Path:
    from meddinov3.probe.report import FIGURE_PNG

    return workspace.probe / FIGURE_PNG


def probe_outputs(workspace: Workspace) -> list[Path]:
    return [workspace.probe]
