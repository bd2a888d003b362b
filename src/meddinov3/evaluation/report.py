"""Write the per-case CSV and the JSON summary atomically, and print the summary table."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from meddinov3.evaluation.summary import METRICS
from meddinov3.io import atomic_write_texts

PER_CASE_CSV = "evaluation_per_case.csv"
SUMMARY_JSON = "evaluation_summary.json"


def csv_text(rows: Sequence[Mapping[str, object]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["case", "label", "name", *METRICS], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def json_text(summary: Mapping[str, object]) -> str:
    # Strict JSON has no NaN: undefined statistics become null.
    return json.dumps(_nan_to_none(summary), indent=2, allow_nan=False) + "\n"


def _nan_to_none(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Mapping):
        return {key: _nan_to_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(item) for item in value]
    return value


def write_outputs(output_dir: Path, files: Mapping[str, str]) -> list[Path]:
    """Every file written and checked under a temporary name, then all moved into place: a
    failure (a full disk) leaves no partial file behind and the previous outputs untouched."""
    output_dir.mkdir(parents=True, exist_ok=True)
    return atomic_write_texts(output_dir, files)


def print_table(summary: Mapping[str, object], console) -> None:
    """DSC and NSD in percent (as the paper prints them), HD95 in mm, mean ± std over cases."""
    from rich.table import Table

    tolerance = summary["protocol"]["tolerance_mm"]  # type: ignore[index]
    table = Table(title=f"{summary['n_cases']} cases, NSD at {tolerance:g} mm")
    for column in ("label", "name", "DSC %", f"NSD@{tolerance:g}mm %", "HD95 mm", "cases"):
        table.add_column(column, justify="left" if column in ("label", "name") else "right")
    for label, entry in summary["labels"].items():  # type: ignore[union-attr]
        table.add_row(
            label,
            entry["name"],
            _mean_std(entry["dice"], 100),
            _mean_std(entry["nsd"], 100),
            _mean_std(entry["hd95"], 1),
            str(entry["dice"]["n"]),
        )
    means = summary["mean_over_labels"]
    table.add_section()
    table.add_row(
        "mean", "of label means", _number(means["dice"], 100), _number(means["nsd"], 100),  # type: ignore[index]
        _number(means["hd95"], 1), "",  # type: ignore[index]
    )
    console.print(table)


def _mean_std(stats: Mapping[str, float], scale: float) -> str:
    if math.isnan(stats["mean"]):
        return "-"
    if math.isnan(stats["std"]):
        return f"{stats['mean'] * scale:.2f}"
    return f"{stats['mean'] * scale:.2f} ± {stats['std'] * scale:.2f}"


def _number(value: float, scale: float) -> str:
    return "-" if math.isnan(value) else f"{value * scale:.2f}"
