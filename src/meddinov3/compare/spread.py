"""How much a method's score varies over the held-out cases, read from the evaluation's per-case CSV.

The headline number is the paper's (per label the mean over cases, then the mean over labels);
its spread here is over cases: each case's mean over the labels its reference holds, then the
sample standard deviation and the quartiles of those per-case means.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from meddinov3.compare.results import ComparisonError

PER_CASE_CSV = "evaluation_per_case.csv"  # meddinov3.evaluation.report's name


@dataclass(frozen=True)
class Spread:
    """Percent; NaN where undefined (std of a single case, a metric no case defines)."""

    n_cases: int
    std: float
    q25: float
    q75: float


def per_case_means(path: Path, metric: str) -> dict[str, float]:
    """Case -> mean over its defined labels of `metric` (dice, nsd), in percent."""
    values: dict[str, list[float]] = {}
    try:
        with open(path, newline="", encoding="utf-8") as stream:
            for row in csv.DictReader(stream):
                value = float(row[metric] or "nan")
                values.setdefault(row["case"], [])
                if not math.isnan(value):
                    values[row["case"]].append(100.0 * value)
    except (OSError, KeyError, ValueError) as error:
        raise ComparisonError(f"{path}: cannot read per-case scores ({type(error).__name__}: {error})") from error
    return {case: float(np.mean(v)) if v else math.nan for case, v in values.items()}


def spread_of(means: dict[str, float]) -> Spread:
    defined = np.asarray([v for v in means.values() if not math.isnan(v)], dtype=np.float64)
    if defined.size == 0:
        return Spread(len(means), math.nan, math.nan, math.nan)
    q25, q75 = np.percentile(defined, [25, 75])
    std = float(defined.std(ddof=1)) if defined.size > 1 else math.nan
    return Spread(len(means), std, float(q25), float(q75))
