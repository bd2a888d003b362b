"""A dataset read for probing: training slices chosen (seeded), their targets at the probe size,
and every case's shape checked against its label, so that later steps read images only."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from meddinov3.probe.config import ProbeConfig
from meddinov3.probe.splits import ProbeDataset, read_probe_dataset
from meddinov3.probe.progress import progress_bars
from meddinov3.probe.slices import (
    IGNORE_INDEX, ClassSet, check_same_shape, choose_training_slices, read_label_volume, resize_targets,
)


@dataclass
class ProbeData:
    dataset: ProbeDataset
    config: ProbeConfig
    classes: ClassSet
    train_slices: dict[str, np.ndarray]  # case -> slice indices, for the cases with any chosen
    train_targets: dict[str, np.ndarray]  # case -> (slices, size, size) uint8 class indices
    test_depths: dict[str, int]  # case -> number of axial slices

    @property
    def n_train_slices(self) -> int:
        return sum(len(z) for z in self.train_slices.values())

    @property
    def n_test_slices(self) -> int:
        return sum(self.test_depths.values())


def prepare_probe(dataset: str | os.PathLike, config: ProbeConfig | None = None, show_progress: bool = False) -> ProbeData:
    """Read the dataset's labels, choose the training slices and size their targets."""
    config = config or ProbeConfig()
    data = read_probe_dataset(dataset)
    classes = ClassSet.of(data.labels)
    with progress_bars(show_progress) as progress:
        task = progress.add_task("reading labels", total=2 * len(data.train) + len(data.test))
        foreground = {}
        for case in data.train:
            check_same_shape(case)
            targets = classes.targets(read_label_volume(case.label), case.label)
            foreground[case.name] = ((targets > 0) & (targets != IGNORE_INDEX)).any(axis=(1, 2))
            progress.advance(task)
        chosen = choose_training_slices(foreground, config.max_train_slices, config.foreground_share, config.seed)
        # Second pass: holding every training label volume at once would not fit for large datasets.
        sized = {}
        for case in data.train:
            if case.name in chosen:
                targets = classes.targets(read_label_volume(case.label), case.label)
                sized[case.name] = resize_targets(targets[chosen[case.name]], config.size)
            progress.advance(task)
        depths = {}
        for case in data.test:
            depths[case.name] = check_same_shape(case)[0]
            progress.advance(task)
    return ProbeData(data, config, classes, chosen, sized, depths)
