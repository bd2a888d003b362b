"""Per-case rows and the per-label summary, aggregated the way the paper reports it.

Each label's mean and standard deviation run over the cases where the metric is defined (not
NaN); the headline number is the mean over labels of those per-label means.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

METRICS = ("dice", "nsd", "hd95")

CaseScores = Mapping[int, Mapping[str, float]]


def label_set(per_case: Mapping[str, CaseScores]) -> list[int]:
    return sorted({label for scores in per_case.values() for label in scores})


def per_case_rows(
    per_case: Mapping[str, CaseScores], labels: Sequence[int], names: Mapping[int, str]
) -> list[dict[str, object]]:
    """One row per case and label; labels a case did not score are NaN (absent from its reference)."""
    rows = []
    for case in sorted(per_case):
        for label in labels:
            scores = per_case[case].get(label, {})
            row: dict[str, object] = {"case": case, "label": label, "name": names.get(label, str(label))}
            row.update({metric: float(scores.get(metric, math.nan)) for metric in METRICS})
            rows.append(row)
    return rows


def metric_stats(values: Sequence[float]) -> dict[str, float | int]:
    """Mean, sample standard deviation (ddof=1) and count of the non-NaN values."""
    defined = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    return {
        "mean": float(defined.mean()) if defined.size else math.nan,
        "std": float(defined.std(ddof=1)) if defined.size > 1 else math.nan,
        "n": int(defined.size),
    }


def summarize(
    per_case: Mapping[str, CaseScores],
    labels: Sequence[int],
    names: Mapping[int, str],
    tolerance_mm: float,
) -> dict[str, object]:
    per_label: dict[str, dict[str, object]] = {}
    for label in labels:
        entry: dict[str, object] = {"name": names.get(label, str(label))}
        for metric in METRICS:
            entry[metric] = metric_stats([per_case[c].get(label, {}).get(metric, math.nan) for c in per_case])
        per_label[str(label)] = entry
    mean_over_labels = {
        metric: _nanmean([entry[metric]["mean"] for entry in per_label.values()])  # type: ignore[index]
        for metric in METRICS
    }
    return {
        "protocol": {
            "tolerance_mm": tolerance_mm,
            "hd_percentile": 95,
            "definitions": "MONAI compute_dice / compute_surface_dice / compute_hausdorff_distance,"
            " per label, voxel spacing in mm, euclidean, 6-connected surface voxels",
            "nan": "label absent from the reference: NaN for all metrics; prediction empty:"
            " DSC 0, NSD 0, HD95 NaN. NaN values are left out of means.",
            "std": "sample standard deviation over cases (ddof=1)",
        },
        "n_cases": len(per_case),
        "labels": per_label,
        "mean_over_labels": mean_over_labels,
    }


def _nanmean(values: Sequence[float]) -> float:
    defined = [v for v in values if not math.isnan(v)]
    return float(np.mean(defined)) if defined else math.nan
