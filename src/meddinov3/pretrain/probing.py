"""The frozen-feature probe of the teacher, every `eval.every` iterations of pretraining.

The held-out DSC of a linear head on the teacher's patch features is the quantity pretraining is
for; logged beside the losses (`probe_dsc`, and once `probe_dsc_random` for a random-init twin of
the same architecture) it shows whether the features improve, not only whether a loss falls.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from meddinov3.pretrain.config import EvalConfig

log = logging.getLogger("meddinov3.pretrain")


class TeacherProbe:
    """Prepares the probe dataset once, scores the random twin once, then the teacher on demand."""

    def __init__(self, config: EvalConfig, teacher_backbone: nn.Module, seed: int):
        from meddinov3.probe import ProbeConfig, prepare_probe, random_twin

        self.config = config
        probe_config = ProbeConfig(size=config.size, layers=config.layers, max_train_slices=config.max_train_slices,
                                   steps=config.steps, seed=seed)
        self.data = prepare_probe(config.probe_dataset, probe_config)
        self.random_dsc = self._mean_dice(random_twin(teacher_backbone, seed=seed))
        log.info("probe: random-init twin scores mean DSC %.3f on %s", self.random_dsc, config.probe_dataset)

    def due(self, iteration: int, last: int) -> bool:
        """After `iteration` iterations are done: every `eval.every`, and after the last one."""
        every = self.config.every
        return iteration == last or (every > 0 and iteration % every == 0)

    def _mean_dice(self, backbone: nn.Module) -> float:
        from meddinov3.probe import run_probe

        device = next(backbone.parameters()).device
        # The probe draws its own seeded numbers; it must not move the RNG training continues from.
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            result = run_probe(self.data, {"backbone": backbone}, device=device)
        return float(result.scores["backbone"].mean_dice)

    def measure(self, teacher_backbone: nn.Module) -> dict[str, float]:
        return {"probe_dsc": self._mean_dice(teacher_backbone), "probe_dsc_random": self.random_dsc}
