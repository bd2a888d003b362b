"""The label-efficiency table: DSC and NSD per method and number of labelled cases, with their spread."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from meddinov3.compare.results import MethodScores
from meddinov3.compare.spread import Spread
from meddinov3.compare.table import check_comparable
from meddinov3.nnunet.subsets import Subset

UNDEFINED = "n/a"  # a std of one case, a metric no case defines (ASCII: printed under any locale)


@dataclass(frozen=True)
class SubsetScores:
    """One method trained on one subset, scored on the held-out cases."""

    subset: Subset
    scores: MethodScores
    dsc_spread: Spread
    nsd_spread: Spread
    case_dsc: dict[str, float]  # held-out case -> its mean DSC over classes (%), for paired comparisons

    @property
    def method(self) -> str:
        return self.scores.method


@dataclass(frozen=True)
class EfficiencyContext:
    dataset: str
    fold: int
    seed: int
    n_training_cases: int  # the fold's, all of them


def fmt(value: float) -> str:
    return UNDEFINED if math.isnan(value) else f"{value:.2f}"


def _range(spread: Spread) -> str:
    if math.isnan(spread.q25):
        return UNDEFINED
    return f"{spread.q25:.2f}-{spread.q75:.2f}"


def markdown_table(context: EfficiencyContext, rows: Sequence[SubsetScores], display_name: Callable[[str], str]) -> str:
    check_comparable([r.scores for r in rows])
    tolerance = f"{rows[0].scores.tolerance_mm:g} mm"
    lines = [
        f"# Label efficiency on {context.dataset}, fold {context.fold}",
        "",
        f"Each method trained on nested subsets of the fold's {context.n_training_cases} training cases"
        f" (seed {context.seed}, the same subsets for every method: subsets.json) and scored on the fold's"
        f" {rows[0].scores.n_cases} held-out cases.",
        f"DSC and NSD ({tolerance}) in %, the paper's protocol: per class the mean over cases, then the mean"
        " over classes. Spread over the held-out cases of each case's mean over classes: sample std and"
        " interquartile range (25th-75th percentile).",
        "",
        f"| Method | Labelled cases | DSC | DSC std | DSC IQR | NSD ({tolerance}) | NSD std | NSD IQR |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {display_name(r.method)} | {r.subset.label} | {fmt(r.scores.dsc)} | {fmt(r.dsc_spread.std)} |"
            f" {_range(r.dsc_spread)} | {fmt(r.scores.nsd)} | {fmt(r.nsd_spread.std)} | {_range(r.nsd_spread)} |"
        )
    return "\n".join(lines) + "\n"


CSV_COLUMNS = (
    "dataset", "fold", "seed", "method", "method_name", "train_cases", "all_cases", "held_out_cases",
    "dsc", "dsc_std", "dsc_q25", "dsc_q75", "nsd", "nsd_std", "nsd_q25", "nsd_q75",
)


def csv_table(context: EfficiencyContext, rows: Sequence[SubsetScores], display_name: Callable[[str], str]) -> str:
    """One row per method and subset; percent, empty when undefined."""
    check_comparable([r.scores for r in rows])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        d, n = r.dsc_spread, r.nsd_spread
        writer.writerow((
            context.dataset, context.fold, context.seed, r.method, display_name(r.method), r.subset.count,
            int(r.subset.is_all), r.scores.n_cases,
            *map(_csv, (r.scores.dsc, d.std, d.q25, d.q75, r.scores.nsd, n.std, n.q25, n.q75)),
        ))
    return buffer.getvalue()


def _csv(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.4f}"
