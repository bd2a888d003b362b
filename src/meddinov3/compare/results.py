"""One method's scores as the table and plot need them, read from an evaluation summary.

The summary is the JSON that `meddinov3.evaluation.evaluate_folder` writes: per label a name
and DSC/NSD means over cases, plus the mean over labels (the paper's headline number).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from meddinov3.errors import InputError


class ComparisonError(InputError, ValueError):
    """A comparison that cannot be made; the message names the method, file or setting."""


@dataclass(frozen=True)
class ClassScore:
    label: int
    name: str
    dsc: float  # percent, NaN when the class is absent from every reference
    nsd: float


@dataclass(frozen=True)
class MethodScores:
    method: str
    n_cases: int
    tolerance_mm: float
    dsc: float  # percent
    nsd: float
    classes: tuple[ClassScore, ...]


def percent(value: object) -> float:
    number = float(value) if value is not None else math.nan
    return 100.0 * number


def scores_from_summary(method: str, summary: dict) -> MethodScores:
    try:
        labels = summary["labels"]
        classes = tuple(
            ClassScore(int(key), str(entry["name"]), percent(entry["dice"]["mean"]), percent(entry["nsd"]["mean"]))
            for key, entry in sorted(labels.items(), key=lambda item: int(item[0]))
        )
        means = summary["mean_over_labels"]
        return MethodScores(
            method=method,
            n_cases=int(summary["n_cases"]),
            tolerance_mm=float(summary["protocol"]["tolerance_mm"]),
            dsc=percent(means["dice"]),
            nsd=percent(means["nsd"]),
            classes=classes,
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ComparisonError(f"method {method}: not an evaluation summary ({type(error).__name__}: {error})") from error


def read_scores(method: str, summary_path: Path) -> MethodScores:
    try:
        summary = json.loads(Path(summary_path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ComparisonError(f"method {method}: cannot read {summary_path} ({error})") from error
    return scores_from_summary(method, summary)
