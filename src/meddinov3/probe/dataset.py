"""Which cases the probe trains on and which it scores: an nnU-Net raw dataset's two splits.

    DatasetXXX_Name/
      dataset.json                    labels, file_ending
      imagesTr/ + labelsTr/           training slices for the linear head
      imagesTs/ + labelsTs/           held-out volumes, scored per label with meddinov3.evaluation

Only channel 0 (`_0000`) is read: the probe feeds CT intensities to the backbone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from meddinov3.evaluation.errors import EvaluationError
from meddinov3.evaluation.labels import DatasetLabels, read_dataset_labels
from meddinov3.evaluation.pairing import images_by_case

DEFAULT_FILE_ENDING = ".nii.gz"
CHANNEL = "_0000"
HELD_OUT_HINT = "the probe scores held-out cases from imagesTs + labelsTs (`meddinov3 synth --test-cases N` writes them)"


class ProbeDatasetError(ValueError):
    """The dataset cannot be probed; the message names the folder or file and what is wrong."""


@dataclass(frozen=True)
class Case:
    name: str
    image: Path
    label: Path


@dataclass(frozen=True)
class ProbeDataset:
    folder: Path
    labels: DatasetLabels
    train: tuple[Case, ...]
    test: tuple[Case, ...]
    # dataset.json's name for channel 0 ("CT" for CT datasets).
    channel_name: str


def resolve_dataset_folder(dataset: str | os.PathLike) -> Path:
    """A folder as given, or an id / name (501, Dataset501_X) looked up under $nnUNet_raw."""
    path = Path(dataset)
    if path.is_dir():
        return path.absolute()
    if path.exists():
        raise ProbeDatasetError(f"{path}: not a folder; DATASET is an nnU-Net raw dataset folder, id or name")
    if not os.environ.get("nnUNet_raw"):
        raise ProbeDatasetError(f"{dataset}: no such folder, and $nnUNet_raw is not set to look it up as a dataset id")
    from meddinov3.nnunet.paths import NnUNetSetupError, dataset_folder_name

    try:
        folder = Path(os.environ["nnUNet_raw"]) / dataset_folder_name(str(dataset))
    except NnUNetSetupError as error:
        raise ProbeDatasetError(str(error)) from None
    if not folder.is_dir():
        raise ProbeDatasetError(f"{folder}: dataset {dataset} has no raw folder under $nnUNet_raw")
    return folder


def read_probe_dataset(dataset: str | os.PathLike) -> ProbeDataset:
    """The dataset's labels and cases; refuses a dataset with no labelled held-out case."""
    folder = resolve_dataset_folder(dataset)
    try:
        labels = read_dataset_labels(folder / "dataset.json")
        ending = labels.file_ending or DEFAULT_FILE_ENDING
        train = _paired_cases(folder, "imagesTr", "labelsTr", ending, every_image_labelled=True)
        test = _paired_cases(folder, "imagesTs", "labelsTs", ending, every_image_labelled=False)
    except EvaluationError as error:
        raise ProbeDatasetError(str(error)) from None
    if not train:
        raise ProbeDatasetError(f"{folder}: no training cases in imagesTr/ + labelsTr/")
    if not test:
        raise ProbeDatasetError(f"{folder}: no held-out labelled cases ({_why_no_test(folder, ending)}); {HELD_OUT_HINT}")
    return ProbeDataset(folder, labels, tuple(train), tuple(test), _channel_name(folder))


def _paired_cases(folder: Path, images: str, labels: str, ending: str, every_image_labelled: bool) -> list[Case]:
    image_dir, label_dir = folder / images, folder / labels
    if not image_dir.is_dir() or not label_dir.is_dir():
        return []
    image_files = images_by_case(image_dir, (CHANNEL + ending,))
    label_files = images_by_case(label_dir, (ending,))
    unlabelled = sorted(set(image_files) - set(label_files))
    if every_image_labelled and unlabelled:
        raise ProbeDatasetError(f"{label_dir}: no label for {len(unlabelled)} image(s), e.g. {unlabelled[0]}{ending}")
    without_image = sorted(set(label_files) - set(image_files))
    if without_image:
        raise ProbeDatasetError(
            f"{label_files[without_image[0]]}: a label without its image {image_dir.name}/{without_image[0]}{CHANNEL}{ending}"
        )
    return [Case(name, image_files[name], label_files[name]) for name in sorted(image_files) if name in label_files]


def _why_no_test(folder: Path, ending: str) -> str:
    missing = [name + "/" for name in ("imagesTs", "labelsTs") if not (folder / name).is_dir()]
    if missing:
        return f"{' and '.join(missing)} missing"
    return f"imagesTs/ and labelsTs/ share no case with file ending {ending}"


def _channel_name(folder: Path) -> str:
    import json

    channels = json.loads((folder / "dataset.json").read_text(encoding="utf-8")).get("channel_names") or {}
    return str(channels.get("0", "unknown"))
