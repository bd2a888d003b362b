"""Matplotlib figures of CT slices and feature maps, written atomically as PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from meddinov3.io import atomic_write

SOFT_TISSUE_WINDOW = (40.0, 400.0)  # level, width in HU


def windowed(hu: np.ndarray, level: float = SOFT_TISSUE_WINDOW[0], width: float = SOFT_TISSUE_WINDOW[1]) -> np.ndarray:
    return np.clip((hu - (level - width / 2)) / width, 0, 1)


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    import matplotlib.pyplot as plt

    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png"))
    finally:
        plt.close(fig)


def pca_figure(hu: np.ndarray, rgb: np.ndarray, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 4.2))
    axes[0].imshow(windowed(hu), cmap="gray")
    axes[0].set_title("CT (W400/L40)")
    axes[1].imshow(rgb, interpolation="nearest")
    axes[1].set_title("PCA of patch features")
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title)
    return fig


def similarity_figure(hu: np.ndarray, maps: list[np.ndarray], queries: list[tuple[int, int]], patch: int, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(maps), figsize=(4 * len(maps), 4.2), squeeze=False)
    h, w = hu.shape
    for ax, sim, (r, c) in zip(axes[0], maps, queries):
        ax.imshow(windowed(hu), cmap="gray")
        ax.imshow(sim, cmap="inferno", alpha=0.6, extent=(0, w, h, 0), vmin=-1, vmax=1, interpolation="nearest")
        ax.plot((c + 0.5) * patch, (r + 0.5) * patch, "o", color="red", markersize=6)
        ax.axis("off")
    fig.suptitle(title)
    return fig
