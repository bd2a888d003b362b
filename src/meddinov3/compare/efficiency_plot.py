"""DSC against the number of labelled training cases, one line per method, the case spread as a band.

The x axis is logarithmic (counts like 1, 2, 5, 20 are spread evenly); the band is the
interquartile range over held-out cases of each case's mean DSC over classes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from meddinov3.compare.efficiency_table import EfficiencyContext, SubsetScores
from meddinov3.viz.figures import save_figure


def efficiency_figure(context: EfficiencyContext, rows: Sequence[SubsetScores], display_name: Callable[[str], str]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # nnU-Net's progress plots change matplotlib's global style in this process.
    with plt.style.context("default"):
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        methods = list(dict.fromkeys(r.method for r in rows))
        for method in methods:
            own = sorted((r for r in rows if r.method == method), key=lambda r: r.subset.count)
            counts = [r.subset.count for r in own]
            (line,) = ax.plot(counts, [r.scores.dsc for r in own], "o-", label=display_name(method))
            ax.fill_between(
                counts, [r.dsc_spread.q25 for r in own], [r.dsc_spread.q75 for r in own],
                color=line.get_color(), alpha=0.15, linewidth=0,
            )
        counts = sorted({r.subset.count for r in rows})
        ax.set_xscale("log")
        ax.set_xticks(counts)
        ax.set_xticklabels([next(r.subset.label for r in rows if r.subset.count == c) for c in counts])
        ax.minorticks_off()
        ax.set_xlabel("labelled training cases")
        ax.set_ylabel("DSC (%), mean over classes")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        ax.set_title(
            f"{context.dataset}, fold {context.fold}: {rows[0].scores.n_cases} held-out cases"
            " (band: interquartile range over cases)",
            fontsize=9,
        )
        fig.tight_layout()
    return fig


def write_efficiency_plot(
    context: EfficiencyContext, rows: Sequence[SubsetScores], display_name: Callable[[str], str], path: Path
) -> Path:
    return save_figure(efficiency_figure(context, rows, display_name), path)
