"""The chance level of the demo's results table: the DSC of labelling voxels at random with the
training organ frequencies, per organ, on the held-out cases."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from meddinov3.demo import figures
from meddinov3.demo.workspace import Workspace


def label_fractions(paths: Sequence[Path], n_labels: int) -> np.ndarray:
    counts = np.zeros(n_labels, dtype=np.float64)
    for path in paths:
        seg, _ = figures.read_volume(path)
        counts += np.bincount(seg.ravel(), minlength=n_labels)[:n_labels]
    return counts / counts.sum()


def expected_random_dice(train: np.ndarray, case: np.ndarray) -> np.ndarray:
    """Expected DSC per class of labelling each voxel at random with class frequencies `train`,
    on a case with class frequencies `case`: 2pq / (p + q), NaN where the case lacks the class."""
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = 2 * train * case / (train + case)
    return np.where(case > 0, dice, np.nan)


def chance_dice(workspace: Workspace, n_labels: int) -> dict[int, float]:
    """The chance level of the results table: random labels with the training organ
    frequencies, averaged over the test cases that contain each organ."""
    train = label_fractions(sorted((workspace.raw_dataset / "labelsTr").glob("*.nii.gz")), n_labels)
    tests = sorted((workspace.raw_dataset / "labelsTs").glob("*.nii.gz"))
    per_case = np.stack([expected_random_dice(train, label_fractions([path], n_labels)) for path in tests])
    return {label: float(np.nanmean(per_case[:, label])) if np.isfinite(per_case[:, label]).any() else math.nan
            for label in range(1, n_labels)}
