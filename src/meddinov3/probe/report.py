"""The probe's outputs: a table (labels x backbones, the mean, each weights' gain over its random
twin), results.json and a per-label bar chart, written atomically."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from meddinov3.evaluation.report import json_text
from meddinov3.io import atomic_write_text
from meddinov3.probe.result import ProbeResult
from meddinov3.viz.figures import save_figure

RESULTS_JSON = "results.json"
FIGURE_PNG = "probe_dsc.png"
MEAN = "mean"


def differences(result: ProbeResult, baselines: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Per weights: its DSC minus its random twin's, per label and for the mean."""
    found = {}
    for name, twin in baselines.items():
        mine, theirs = result.scores[name], result.scores[twin]
        found[name] = {
            "baseline": twin,
            "mean_dice": mine.mean_dice - theirs.mean_dice,
            "dice": {str(label): mine.dice[label] - theirs.dice[label] for label in result.label_names},
        }
    return found


def _cell(value: float, signed: bool = False) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def results_table(result: ProbeResult, baselines: Mapping[str, str]) -> Table:
    table = Table(
        title=f"Linear probe DSC, {len(result.test_cases)} held-out case(s) of {result.dataset.name}",
        caption=f"{result.train_slices} training slices at {result.config.size} px, "
        f"layers {result.config.layers}, seed {result.config.seed}",
    )
    table.add_column("label")
    for name in result.scores:
        table.add_column(name, justify="right")
    for name, twin in baselines.items():
        table.add_column(f"{name} - {twin}", justify="right")
    gains = differences(result, baselines)
    for label, label_name in result.label_names.items():
        cells = [_cell(s.dice[label]) for s in result.scores.values()]
        cells += [_cell(g["dice"][str(label)], signed=True) for g in gains.values()]
        table.add_row(label_name, *cells)
    cells = [_cell(s.mean_dice) for s in result.scores.values()]
    cells += [_cell(g["mean_dice"], signed=True) for g in gains.values()]
    table.add_row(MEAN, *cells, style="bold", end_section=True)
    return table


def results_json(result: ProbeResult, baselines: Mapping[str, str], sources: Mapping[str, Any]) -> dict[str, Any]:
    """result.to_json(), each backbone with where it came from, and the gains over random twins."""
    data = result.to_json()
    for name, source in sources.items():
        data["backbones"][name]["source"] = source
    data["difference"] = differences(result, baselines)
    return data


def bar_chart(result: ProbeResult):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(result.label_names.values()) + [MEAN]
    names = list(result.scores)
    width = 0.8 / len(names)
    x = np.arange(len(groups))
    with plt.style.context("default"):
        fig, ax = plt.subplots(figsize=(max(6.0, 0.3 * len(groups) * len(names) + 2.5), 4.0))
        for i, name in enumerate(names):
            scores = result.scores[name]
            heights = [scores.dice[label] for label in result.label_names] + [scores.mean_dice]
            ax.bar(x - 0.4 + width * (i + 0.5), np.nan_to_num(heights, nan=0.0), width, label=name)
        ax.set_xticks(x)
        ax.set_xticklabels(groups, rotation=45, ha="right")
        ax.set_ylim(0, 1)
        ax.set_ylabel("DSC")
        ax.grid(axis="y", alpha=0.3)
        ax.set_title(f"Linear probe on frozen features, {result.dataset.name} "
                     f"({len(result.test_cases)} held-out case(s), {result.config.size} px)")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
    return fig


def write_outputs(
    result: ProbeResult, out: Path, baselines: Mapping[str, str], sources: Mapping[str, Any]
) -> list[Path]:
    text = json_text(results_json(result, baselines, sources))
    return [atomic_write_text(out / RESULTS_JSON, text), save_figure(bar_chart(result), out / FIGURE_PNG)]
