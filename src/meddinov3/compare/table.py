"""The Table-2-style comparison as Markdown and CSV, with the paper's numbers alongside."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

from meddinov3.compare.paper import PaperTable
from meddinov3.compare.results import ComparisonError, MethodScores

MISSING = "–"


@dataclass(frozen=True)
class ComparisonContext:
    dataset: str
    fold: int | str
    paper_dataset: str | None  # the paper's column these numbers compare with, if any


def fmt(value: float | None) -> str:
    return MISSING if value is None or math.isnan(value) else f"{value:.2f}"


def class_names(results: Sequence[MethodScores]) -> list[tuple[int, str]]:
    """Every class any method scored, by label value (all methods share one dataset.json)."""
    names: dict[int, str] = {}
    for scores in results:
        for cls in scores.classes:
            names.setdefault(cls.label, cls.name)
    return sorted(names.items())


def check_comparable(results: Sequence[MethodScores]) -> None:
    if not results:
        raise ComparisonError("no method results to compare")
    tolerances = {r.tolerance_mm for r in results}
    cases = {r.n_cases for r in results}
    if len(tolerances) > 1 or len(cases) > 1:
        raise ComparisonError(
            "the methods were not evaluated alike: "
            + ", ".join(f"{r.method} ({r.n_cases} cases, NSD {r.tolerance_mm} mm)" for r in results)
        )


def class_value(scores: MethodScores, label: int, metric: str) -> float | None:
    return next((getattr(c, metric) for c in scores.classes if c.label == label), None)


def markdown_table(context: ComparisonContext, results: Sequence[MethodScores], paper: PaperTable) -> str:
    check_comparable(results)
    tolerance = f"{results[0].tolerance_mm:g} mm"
    column = context.paper_dataset
    lines = [
        f"# Method comparison on {context.dataset}, fold {context.fold}",
        "",
        f"{results[0].n_cases} held-out cases of the fold. DSC and NSD ({tolerance}) in %: per class the mean"
        " over cases, then the mean over classes (the paper's protocol).",
        (
            f"Paper columns: {paper.source}, {column}."
            if column
            else "Paper columns: this dataset is none of the paper's (AMOS22, KiTS23, LiTS, BTCV); no reference."
        ),
        "",
        f"| Method | DSC | NSD ({tolerance}) | Paper DSC | Paper NSD |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {paper.display_name(r.method)} | {fmt(r.dsc)} | {fmt(r.nsd)} | "
            f"{fmt(paper.value('dsc', r.method, column))} | {fmt(paper.value('nsd', r.method, column))} |"
        )
    for metric, title in (("dsc", "DSC"), ("nsd", f"NSD, {tolerance}")):
        classes = class_names(results)
        lines += ["", f"## Per-class {title} (%)", ""]
        lines.append("| Method | " + " | ".join(name for _, name in classes) + " |")
        lines.append("|---|" + "---:|" * len(classes))
        for r in results:
            cells = [fmt(class_value(r, label, metric)) for label, _ in classes]
            lines.append(f"| {paper.display_name(r.method)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


CSV_COLUMNS = ("dataset", "fold", "method", "method_name", "label", "class", "dsc", "nsd", "paper_dsc", "paper_nsd")


def csv_table(context: ComparisonContext, results: Sequence[MethodScores], paper: PaperTable) -> str:
    """One row per method and class plus a `mean` row per method; percent, empty when undefined."""
    check_comparable(results)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    common = (context.dataset, context.fold)
    for r in results:
        name = paper.display_name(r.method)
        paper_values = (paper.value("dsc", r.method, context.paper_dataset), paper.value("nsd", r.method, context.paper_dataset))
        writer.writerow((*common, r.method, name, "mean", "mean over classes", *map(_csv, (r.dsc, r.nsd, *paper_values))))
        for cls in r.classes:
            writer.writerow((*common, r.method, name, cls.label, cls.name, _csv(cls.dsc), _csv(cls.nsd), "", ""))
    return buffer.getvalue()


def _csv(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.4f}"
