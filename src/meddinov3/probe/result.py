"""What a probe run found, per backbone, in a form that reads as JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meddinov3.probe.config import ProbeConfig


@dataclass
class BackboneScores:
    mean_dice: float  # the headline: mean over labels of each label's mean DSC over held-out cases
    dice: dict[int, float]  # label -> mean DSC over held-out cases
    summary: dict[str, Any]  # meddinov3.evaluation's summary: DSC, NSD and HD95 per label
    per_case: dict[str, dict[int, dict[str, float]]]
    train_loss: float  # mean cross-entropy over the last tenth of the head's steps
    computed_slices: int  # slices whose features this run computed
    reused_slices: int  # slices whose features came from the cache
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "mean_dice": self.mean_dice,
            "dice": {str(k): v for k, v in self.dice.items()},
            "train_loss": self.train_loss,
            "summary": self.summary,
            "per_case": {case: {str(k): v for k, v in s.items()} for case, s in self.per_case.items()},
            "feature_cache": {"computed_slices": self.computed_slices, "reused_slices": self.reused_slices},
            "seconds": self.seconds,
        }


@dataclass
class ProbeResult:
    dataset: Path
    label_names: dict[int, str]  # the scored labels
    config: ProbeConfig
    train_slices: int
    test_cases: list[str]
    scores: dict[str, BackboneScores] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": str(self.dataset),
            "labels": {str(k): v for k, v in self.label_names.items()},
            "config": self.config.to_dict(),
            "seed": self.config.seed,
            "train_slices": self.train_slices,
            "test_cases": self.test_cases,
            "backbones": {name: s.to_json() for name, s in self.scores.items()},
        }
