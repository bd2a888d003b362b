"""Which cases the probe trains on and which it scores: an nnU-Net raw dataset's two splits.

    DatasetXXX_Name/
      dataset.json                    labels, file_ending
      imagesTr/ + labelsTr/           training slices for the linear head
      imagesTs/ + labelsTs/           held-out volumes, scored per label with meddinov3.evaluation

Only channel 0 (`_0000`) is read: the probe feeds CT intensities to the backbone. The dataset is
read by `meddinov3.datasets`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from meddinov3.datasets import (
    DEFAULT_FILE_ENDING,
    Case,
    DatasetLabels,
    RawDatasetError,
    dataset_folder,
    paired_cases,
    read_dataset_json,
)

HELD_OUT_HINT = "the probe scores held-out cases from imagesTs + labelsTs (`meddinov3 synth --test-cases N` writes them)"


class ProbeDatasetError(RawDatasetError):
    """The dataset cannot be probed; the message names the folder or file and what is wrong."""


@dataclass(frozen=True)
class ProbeDataset:
    folder: Path
    labels: DatasetLabels
    train: tuple[Case, ...]
    test: tuple[Case, ...]
    # dataset.json's name for channel 0 ("CT" for CT datasets).
    channel_name: str


def read_probe_dataset(dataset: str | os.PathLike) -> ProbeDataset:
    """The dataset's labels and cases; refuses a dataset with no labelled held-out case."""
    folder = dataset_folder(dataset)
    description = read_dataset_json(folder)
    labels = description.labels
    ending = labels.file_ending or DEFAULT_FILE_ENDING
    train = paired_cases(folder, "Tr", ending, every_image_labelled=True)
    test = paired_cases(folder, "Ts", ending, every_image_labelled=False)
    if not train:
        raise ProbeDatasetError(f"{folder}: no training cases in imagesTr/ + labelsTr/")
    if not test:
        raise ProbeDatasetError(f"{folder}: no held-out labelled cases ({_why_no_test(folder, ending)}); {HELD_OUT_HINT}")
    return ProbeDataset(folder, labels, tuple(train), tuple(test), description.channel_names.get("0", "unknown"))


def _why_no_test(folder: Path, ending: str) -> str:
    missing = [name + "/" for name in ("imagesTs", "labelsTs") if not (folder / name).is_dir()]
    if missing:
        return f"{' and '.join(missing)} missing"
    return f"imagesTs/ and labelsTs/ share no case with file ending {ending}"
