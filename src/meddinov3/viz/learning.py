"""The pretraining monitors as one figure: is the self-distillation learning?

Three panels from metrics.jsonl: the DINO and iBOT losses as a fraction of their uniform-
prediction value (1.0 = the heads predict nothing), the teacher's entropy per sample against
the entropy of its batch-mean prediction (apart = it tells images apart), and the frozen-feature
probe's mean DSC when the run probed (see `meddinov3 probe`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from meddinov3.viz.figures import save_figure


def _series(metrics: Sequence[Mapping[str, float]], key: str) -> tuple[list[float], list[float]]:
    rows = [m for m in metrics if key in m]
    return [m["iteration"] for m in rows], [m[key] for m in rows]


def learning_figure(metrics: Sequence[Mapping[str, float]], path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.style.context("default"):
        probed = any("probe_dsc" in m for m in metrics)
        fig, axes = plt.subplots(1, 3 if probed else 2, figsize=(15 if probed else 10.5, 3.6))
        ax = axes[0]
        for key, label in (("dino_global_frac", "DINO (global crops)"), ("dino_local_frac", "DINO (local crops)"),
                           ("ibot_frac", "iBOT")):
            ax.plot(*_series(metrics, key), lw=1.2, label=label)
        ax.axhline(1.0, color="grey", ls="--", lw=1)
        ax.set_title("loss / uniform-prediction loss (ln K)")
        ax.legend(fontsize=8)
        ax = axes[1]
        ax.plot(*_series(metrics, "teacher_entropy"), lw=1.2, label="per sample")
        ax.plot(*_series(metrics, "teacher_mean_entropy"), lw=1.2, label="of the batch mean")
        ax.set_title("teacher entropy (nats)")
        ax.legend(fontsize=8)
        if probed:
            ax = axes[2]
            ax.plot(*_series(metrics, "probe_dsc"), marker="o", lw=1.2, label="teacher")
            if any("probe_dsc_random" in m for m in metrics):
                ax.plot(*_series(metrics, "probe_dsc_random"), ls="--", color="grey", lw=1, label="random init")
            ax.set_title("linear probe, mean DSC (held-out)")
            ax.set_ylim(0, 1)
            ax.legend(fontsize=8)
        for ax in axes:
            ax.set_xlabel("iteration")
            ax.grid(alpha=0.3)
        fig.tight_layout()
        return save_figure(fig, path)
