"""The backbones a `meddinov3 probe` run compares: each --weights, and a random twin of each
architecture (same BackboneConfig, DINOv3's random initialisation drawn with the probe's seed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from meddinov3.backbone import DinoVisionTransformer, load_backbone

RANDOM = "random"


def random_twin(backbone: DinoVisionTransformer, seed: int) -> DinoVisionTransformer:
    """Same architecture, random weights; the same seed always gives the same twin (and so hits
    the same feature cache). The global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DinoVisionTransformer(backbone.config).eval()


def display_names(weights: Sequence[str]) -> list[str]:
    """Short column names: file or folder name (a Hub id as given), numbered where they repeat."""
    stems = [Path(w).name.removesuffix(".safetensors").removesuffix(".pth").removesuffix(".pt")
             if Path(w).exists() else w for w in weights]
    return [f"{stem} ({i + 1})" if stems.count(stem) > 1 else stem for i, stem in enumerate(stems)]


def load_compared(
    weights: Sequence[str], random_baseline: bool, seed: int, device: torch.device
) -> tuple[dict[str, DinoVisionTransformer], dict[str, str]]:
    """(name -> backbone on `device`, weights name -> its random twin's name). Weights sharing an
    architecture share one twin, named "random" when there is a single architecture."""
    backbones = {name: load_backbone(w).to(device) for name, w in zip(display_names(weights), weights)}
    if not random_baseline:
        return backbones, {}
    first_with: dict[str, str] = {}  # architecture -> first weights name that has it
    for name, model in backbones.items():
        first_with.setdefault(repr(model.config), name)

    def twin_of(architecture: str) -> str:
        return RANDOM if len(first_with) == 1 else f"{RANDOM} ({first_with[architecture]})"

    twins = {twin_of(a): random_twin(backbones[n], seed).to(device) for a, n in first_with.items()}
    return {**backbones, **twins}, {name: twin_of(repr(m.config)) for name, m in backbones.items()}
