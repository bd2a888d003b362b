"""Per-class bar chart of the comparison: DSC on top, NSD below, one bar per method and class.

The last group is the mean over classes; where the paper reports a number for the method on this
dataset it is drawn as a black diamond on that bar.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from meddinov3.compare.paper import PaperTable
from meddinov3.compare.results import MethodScores
from meddinov3.compare.table import ComparisonContext, check_comparable, class_names, class_value
from meddinov3.viz.figures import save_figure

MEAN_LABEL = "mean"


def bar_heights(results: Sequence[MethodScores], metric: str) -> np.ndarray:
    """(methods, classes + 1) in percent; NaN where a class is undefined; last column the mean."""
    classes = class_names(results)
    rows = []
    for r in results:
        values = [class_value(r, label, metric) for label, _ in classes]
        rows.append([math.nan if v is None else v for v in values] + [getattr(r, metric)])
    return np.asarray(rows, dtype=float)


def comparison_figure(context: ComparisonContext, results: Sequence[MethodScores], paper: PaperTable):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    check_comparable(results)
    # nnU-Net's progress plots change matplotlib's global style (seaborn, huge fonts) in this process.
    with plt.style.context("default"):
        return _draw(context, results, paper, plt)


def _draw(context: ComparisonContext, results: Sequence[MethodScores], paper: PaperTable, plt):
    groups = [name for _, name in class_names(results)] + [MEAN_LABEL]
    tolerance = f"{results[0].tolerance_mm:g} mm"
    width = 0.8 / len(results)
    positions = np.arange(len(groups))
    fig, axes = plt.subplots(2, 1, figsize=(max(7.0, 0.35 * len(groups) * len(results) + 2.5), 7), sharex=True)
    for ax, (metric, title) in zip(axes, (("dsc", "DSC (%)"), ("nsd", f"NSD {tolerance} (%)"))):
        heights = bar_heights(results, metric)
        for i, r in enumerate(results):
            x = positions - 0.4 + width * (i + 0.5)
            ax.bar(x, np.nan_to_num(heights[i], nan=0.0), width, label=paper.display_name(r.method))
            reference = paper.value(metric, r.method, context.paper_dataset)
            if reference is not None:
                ax.plot(x[-1], reference, "kD", markersize=5)
        ax.set_ylabel(title)
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
    if context.paper_dataset:
        axes[0].plot([], [], "kD", markersize=5, label=f"paper, {context.paper_dataset}")
    axes[0].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes[0].set_title(f"{context.dataset}, fold {context.fold} ({results[0].n_cases} held-out cases)")
    axes[1].set_xticks(positions)
    axes[1].set_xticklabels(groups, rotation=45, ha="right")
    fig.tight_layout()
    return fig


def write_comparison_plot(
    context: ComparisonContext, results: Sequence[MethodScores], paper: PaperTable, path: Path
) -> Path:
    return save_figure(comparison_figure(context, results, paper), path)
