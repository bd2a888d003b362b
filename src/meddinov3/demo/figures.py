"""The demo report's pictures: the data, the training curves, the segmentations, the features.

CT is shown in a soft-tissue window (W400/L40) in radiological orientation: image top =
anterior, image left = patient right (the orientation the synthetic volumes and the curated
corpus are stored in).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from meddinov3.synth.preview import SOFT_TISSUE, window_to_grey
from meddinov3.viz.figures import save_figure

ORGAN_COLOURS = ("#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6")
INIT_TITLES = {"pretrained": "pretrained init", "random": "random init"}


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plain_style(draw: Callable[..., Path]) -> Callable[..., Path]:
    """Draw with matplotlib's default style: nnU-Net's progress plot switches the whole process
    to seaborn's style with 2.5x fonts, which would otherwise leak into every later figure."""

    @functools.wraps(draw)
    def drawn_plainly(*args, **kwargs) -> Path:
        with pyplot().style.context("default"):
            return draw(*args, **kwargs)

    return drawn_plainly


def read_volume(path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """(Z, Y, X) voxels and (x, y, z) spacing, read whole and finite (`meddinov3.images`)."""
    import SimpleITK as sitk

    from meddinov3.images import read_image

    image = read_image(path)
    return sitk.GetArrayFromImage(image), image.GetSpacing()


def richest_slice(label: np.ndarray) -> int:
    """The axial slice showing the most organs (ties: the most labelled pixels)."""
    counts = [(len(np.unique(s)) - 1, int((s > 0).sum())) for s in label]
    return max(range(len(counts)), key=lambda k: counts[k])


def label_colours(n_labels: int):
    from matplotlib.colors import ListedColormap

    colours = [(0, 0, 0, 0)] + [ORGAN_COLOURS[(k - 1) % len(ORGAN_COLOURS)] for k in range(1, n_labels)]
    return ListedColormap(colours)


def show_ct(ax, hu: np.ndarray, title: str, aspect: float = 1.0) -> None:
    ax.imshow(window_to_grey(hu, *SOFT_TISSUE), cmap="gray", vmin=0, vmax=1, aspect=aspect,
              interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.axis("off")


def overlay(ax, label: np.ndarray, n_labels: int, aspect: float = 1.0) -> None:
    ax.imshow(label, cmap=label_colours(n_labels), vmin=0, vmax=n_labels - 1, alpha=0.45, aspect=aspect,
              interpolation="nearest")


def organ_legend(fig, names: Mapping[int, str]) -> None:
    from matplotlib.patches import Patch

    handles = [Patch(color=ORGAN_COLOURS[(k - 1) % len(ORGAN_COLOURS)], label=name)
               for k, name in sorted(names.items()) if k > 0]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 7), fontsize=9, frameon=False)


@plain_style
def dataset_figure(image: Path, label: Path, names: Mapping[int, str], path: Path) -> Path:
    """Axial slice in the soft-tissue window, with its labels, and a coronal reformat."""
    hu, spacing = read_volume(image)
    seg, _ = read_volume(label)
    k = richest_slice(seg)
    row = int(np.argwhere(seg[k] > 0)[:, 0].mean()) if (seg[k] > 0).any() else hu.shape[1] // 2
    coronal_aspect = spacing[2] / spacing[0]
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.6))
    show_ct(axes[0], hu[k], f"axial slice {k}, W{SOFT_TISSUE[0]:.0f}/L{SOFT_TISSUE[1]:.0f}")
    show_ct(axes[1], hu[k], "labels")
    overlay(axes[1], seg[k], len(names))
    show_ct(axes[2], hu[::-1, row, :], f"coronal reformat (row {row})", coronal_aspect)
    overlay(axes[2], seg[::-1, row, :], len(names), coronal_aspect)
    organ_legend(fig, names)
    fig.suptitle(f"{image.name}: {hu.shape[0]} x {hu.shape[1]} x {hu.shape[2]} voxels, "
                 f"spacing {spacing[0]:.2f} x {spacing[1]:.2f} x {spacing[2]:.2f} mm")
    return save_figure(fig, path)


@plain_style
def corpus_figure(slices: Sequence[tuple[str, np.ndarray]], path: Path) -> Path:
    """A row of curated corpus slices (256 x 256 HU) with where they come from."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(slices), figsize=(2.6 * len(slices), 3.0), squeeze=False)
    for ax, (title, hu) in zip(axes[0], slices):
        show_ct(ax, hu, title)
    fig.suptitle("curated pretraining corpus (every axial slice resampled to 0.45 mm, resized to 256 x 256)")
    return save_figure(fig, path)


@plain_style
def finetuning_figure(curves: Mapping[str, Mapping[str, Sequence[float]]], path: Path) -> Path:
    """nnU-Net's per-epoch training loss, validation loss and pseudo Dice for each init."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for colour, (init, curve) in zip(("tab:blue", "tab:orange"), curves.items()):
        epochs = range(1, len(curve["train_losses"]) + 1)
        axes[0].plot(epochs, curve["train_losses"], color=colour, label=f"{INIT_TITLES[init]}, train")
        axes[0].plot(epochs, curve["val_losses"], color=colour, ls="--", label=f"{INIT_TITLES[init]}, val")
        axes[1].plot(epochs, curve["mean_fg_dice"], color=colour, label=INIT_TITLES[init])
    axes[0].set_title("Dice + CE loss")
    axes[1].set_title("pseudo Dice (nnU-Net, foreground mean)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, path)


@plain_style
def predictions_figure(image: Path, reference: Path, predictions: Mapping[str, Path],
                       names: Mapping[int, str], path: Path) -> Path:
    """One held-out slice: CT, reference labels and each init's prediction."""
    hu, _ = read_volume(image)
    truth, _ = read_volume(reference)
    k = richest_slice(truth)
    panels = [("reference", truth[k])] + [(INIT_TITLES[i], read_volume(p)[0][k]) for i, p in predictions.items()]
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(3.6 * (len(panels) + 1), 4.4))
    show_ct(axes[0], hu[k], f"{image.name.removesuffix('_0000.nii.gz')}, slice {k}")
    for ax, (title, seg) in zip(axes[1:], panels):
        show_ct(ax, hu[k], title)
        overlay(ax, seg, len(names))
    organ_legend(fig, names)
    return save_figure(fig, path)


@plain_style
def features_figure(hu: np.ndarray, maps: Mapping[str, Mapping[str, object]], patch: int, path: Path) -> Path:
    """Per backbone: PCA of the patch features and similarity to query patches (red dots)."""
    from meddinov3.viz.figures import windowed

    plt = pyplot()
    n_queries = max(len(m["similarity"]) for m in maps.values())  # type: ignore[arg-type]
    fig, axes = plt.subplots(len(maps), 2 + n_queries, figsize=(3.2 * (2 + n_queries), 3.4 * len(maps)),
                             squeeze=False)
    h, w = hu.shape
    for row, (title, entry) in zip(axes, maps.items()):
        row[0].imshow(windowed(hu), cmap="gray")
        row[0].set_title(f"{title}: CT", fontsize=10)
        row[1].imshow(entry["pca"], interpolation="nearest")  # type: ignore[arg-type]
        row[1].set_title("PCA of patch features", fontsize=10)
        for ax, sim, (r, c) in zip(row[2:], entry["similarity"], entry["queries"]):  # type: ignore[arg-type]
            ax.imshow(windowed(hu), cmap="gray")
            ax.imshow(sim, cmap="inferno", alpha=0.6, extent=(0, w, h, 0), vmin=-1, vmax=1, interpolation="nearest")
            ax.plot((c + 0.5) * patch, (r + 0.5) * patch, "o", color="red", markersize=5)
            ax.set_title("patch similarity", fontsize=10)
        for ax in row:
            ax.axis("off")
    return save_figure(fig, path)


@plain_style
def few_labels_figure(rows: Sequence[Mapping[str, object]], path: Path) -> Path:
    """Mean DSC against labelled training cases, one line per init (log axis), and the difference
    pretrained minus random with its 95 % paired-bootstrap interval."""
    plt = pyplot()
    counts = [int(row["count"]) for row in rows]  # type: ignore[call-overload]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for colour, init in zip(("tab:blue", "tab:orange"), INIT_TITLES):
        axes[0].plot(counts, [100 * float(row[init]) for row in rows], "o-", color=colour,  # type: ignore[arg-type]
                     label=INIT_TITLES[init])
    difference = [100 * float(row["difference"]) for row in rows]  # type: ignore[arg-type]
    below = [d - 100 * float(row["low"]) for d, row in zip(difference, rows)]  # type: ignore[arg-type]
    above = [100 * float(row["high"]) - d for d, row in zip(difference, rows)]  # type: ignore[arg-type]
    axes[1].errorbar(counts, difference, yerr=[below, above], fmt="o-", color="tab:green", capsize=4,
                     label="pretrained - random, 95 % interval")
    axes[1].axhline(0, color="grey", lw=1)
    axes[0].set_title("mean organ DSC on the held-out cases")
    axes[0].set_ylabel("DSC %")
    axes[1].set_title("difference (paired bootstrap over held-out cases)")
    axes[1].set_ylabel("DSC points")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xticks(counts, [str(c) for c in counts])
        ax.minorticks_off()
        ax.set_xlabel("labelled training cases")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, path)
