"""One nnU-Net raw dataset on disk: where it is, what its dataset.json says, which cases it holds.

    DatasetXXX_Name/
      dataset.json          labels, channel_names, numTraining, file_ending
      imagesTr/ labelsTr/   training cases: CASE_0000<ending> (one file per channel) + CASE<ending>
      imagesTs/ labelsTs/   held-out cases (labels optional)

Every reader of a raw dataset - `plan`'s integrity check and batch planning, `evaluate
--dataset-json`, `probe`, the demo, and `predict` reading a model folder's copy of dataset.json -
reads it here. Image files themselves are read by `meddinov3.images`.

nnU-Net v2 writes `"labels": {"background": 0, "liver": 1, ...}`; the older v1 layout is
`"labels": {"0": "background", "1": "liver"}`. Both are read. Region-based training
(`"liver": [1, 2]`) has no single label per voxel: its values count for a label file, but it has
no label set to score (`DatasetJson.labels` refuses it).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meddinov3.errors import InputError

DATASET_JSON = "dataset.json"
# What nnU-Net itself needs in dataset.json to plan and train.
REQUIRED_KEYS = ("labels", "channel_names", "numTraining", "file_ending")
DEFAULT_FILE_ENDING = ".nii.gz"
FIRST_CHANNEL = "_0000"
# nnU-Net's ignore label marks unannotated voxels; it is no structure to score.
IGNORE_LABEL_NAME = "ignore"
# Single-file formats SimpleITK reads; longest first so ".nii.gz" wins over ".gz".
IMAGE_SUFFIXES = (
    ".nii.gz", ".gipl.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr", ".gipl", ".vtk",
    ".tif", ".tiff", ".png", ".bmp",
)


class RawDatasetError(InputError, ValueError):
    """A raw dataset (folder, dataset.json, case files) that cannot be used as it is; the message
    names the folder or file and the problem."""


def dataset_folder_name(dataset: str | int) -> str:
    """'DatasetXXX_Name' from an id or a name, as nnU-Net resolves it (looks at the folders)."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    try:
        return str(maybe_convert_to_dataset_name(str(dataset)))
    except (RuntimeError, ValueError) as err:
        raise RawDatasetError(f"dataset {dataset!r} not found: {err}") from err


def dataset_folder(dataset: str | os.PathLike) -> Path:
    """A folder as given, or an id / name (501, Dataset501_X) looked up under $nnUNet_raw."""
    path = Path(dataset)
    if path.is_dir():
        return path.absolute()
    if path.exists():
        raise RawDatasetError(f"{path}: not a folder; DATASET is an nnU-Net raw dataset folder, id or name")
    if not os.environ.get("nnUNet_raw"):
        raise RawDatasetError(f"{dataset}: no such folder, and $nnUNet_raw is not set to look it up as a dataset id")
    folder = Path(os.environ["nnUNet_raw"]) / dataset_folder_name(str(dataset))
    if not folder.is_dir():
        raise RawDatasetError(f"{folder}: dataset {dataset} has no raw folder under $nnUNet_raw")
    return folder


@dataclass(frozen=True)
class DatasetLabels:
    """Label values and names of a dataset, and its image file ending if dataset.json gives one."""

    names: dict[int, str]
    file_ending: str | None = None

    @property
    def allowed_values(self) -> frozenset[int]:
        return frozenset(self.names)

    @property
    def scored(self) -> list[int]:
        """Foreground labels: every value except background (0) and nnU-Net's ignore label."""
        return sorted(v for v, n in self.names.items() if v != 0 and n != IGNORE_LABEL_NAME)


@dataclass(frozen=True)
class DatasetJson:
    """What a dataset.json says, read once; `raw` is the file's dict, for nnU-Net's own functions."""

    path: Path
    raw: dict[str, Any]

    @property
    def labels(self) -> DatasetLabels:
        """The label set to score; refuses region-based labels."""
        names: dict[int, str] = {}
        for name, value in _label_entries(self.raw.get("labels"), self.path).items():
            if isinstance(value, tuple):
                raise RawDatasetError(
                    f"{self.path}: label '{name}' is a region {list(value)}; region-based labels are not supported"
                )
            if value in names:
                raise RawDatasetError(f"{self.path}: labels '{names[value]}' and '{name}' share the value {value}")
            names[value] = name
        return DatasetLabels(names, self.file_ending)

    @property
    def label_values(self) -> frozenset[int]:
        """Every value a label file may hold: each label's, the values of regions, the ignore label."""
        values = set()
        for value in _label_entries(self.raw.get("labels"), self.path).values():
            values.update(value if isinstance(value, tuple) else (value,))
        return frozenset(values)

    @property
    def channel_names(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in (self.raw.get("channel_names") or {}).items()}

    @property
    def num_channels(self) -> int:
        return len(self.raw["channel_names"])

    @property
    def file_ending(self) -> str | None:
        ending = self.raw.get("file_ending")
        return ending if isinstance(ending, str) else None

    @property
    def num_training(self) -> int | None:
        return self.raw.get("numTraining")


def read_dataset_json(path: str | os.PathLike, required: tuple[str, ...] = ()) -> DatasetJson:
    """dataset.json at `path` (a file, or a dataset folder holding one), with the `required` keys."""
    path = Path(path)
    if path.is_dir():
        path = path / DATASET_JSON
    if not path.is_file():
        raise RawDatasetError(f"{path}: no such file; a raw nnU-Net dataset needs one")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise RawDatasetError(f"{path}: not valid JSON ({error})") from None
    except (OSError, ValueError) as error:
        raise RawDatasetError(f"{path}: cannot read dataset.json ({error})") from None
    if not isinstance(data, dict):
        raise RawDatasetError(f"{path}: dataset.json holds no JSON object")
    missing = [key for key in required if key not in data]
    if missing:
        raise RawDatasetError(f"{path}: missing required key(s) {missing}")
    return DatasetJson(path, data)


def _label_entries(labels: Any, path: Path) -> dict[str, int | tuple[int, ...]]:
    """name -> value (or a region's values) for either layout of dataset.json's "labels"."""
    if not isinstance(labels, dict) or not labels:
        raise RawDatasetError(f"{path}: dataset.json has no 'labels' mapping")
    if all(isinstance(key, str) and key.isdigit() and isinstance(v, str) for key, v in labels.items()):
        return {name: int(key) for key, name in labels.items()}
    entries: dict[str, int | tuple[int, ...]] = {}
    for name, value in labels.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        for one in values:
            if isinstance(one, bool) or not isinstance(one, int) or one < 0:
                raise RawDatasetError(f"{path}: label '{name}' has value {value!r}, expected an integer >= 0")
        entries[name] = tuple(values) if isinstance(value, (list, tuple)) else value
    return entries


def case_name(path: Path, suffixes: tuple[str, ...]) -> str | None:
    """The file's case name, or None if it does not end in one of `suffixes`."""
    lowered = path.name.lower()
    for suffix in suffixes:
        if lowered.endswith(suffix.lower()) and len(path.name) > len(suffix):
            return path.name[: -len(suffix)]
    return None


def images_by_case(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """Case name -> image file for every image directly inside `folder`."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        name = case_name(path, suffixes)
        if name is None or not path.is_file() or path.name.startswith("."):
            continue
        if name in found:
            raise RawDatasetError(f"case {name}: two images in {folder}: {found[name].name} and {path.name}")
        found[name] = path
    return found


def first_channel_images(folder: Path, split: str, ending: str) -> dict[str, Path]:
    """Case name -> channel-0 image of split `imagesTr` or `imagesTs`; empty if the folder is missing."""
    images = folder / split
    return images_by_case(images, (FIRST_CHANNEL + ending,)) if images.is_dir() else {}


@dataclass(frozen=True)
class Case:
    name: str
    image: Path  # channel 0
    label: Path


def paired_cases(folder: Path, split: str, ending: str, every_image_labelled: bool) -> list[Case]:
    """The cases of split "Tr" or "Ts" with a channel-0 image and a label, by name; a label without
    its image is refused, and so is an image without its label when `every_image_labelled`."""
    image_dir, label_dir = folder / f"images{split}", folder / f"labels{split}"
    if not image_dir.is_dir() or not label_dir.is_dir():
        return []
    image_files = first_channel_images(folder, image_dir.name, ending)
    label_files = images_by_case(label_dir, (ending,))
    unlabelled = sorted(set(image_files) - set(label_files))
    if every_image_labelled and unlabelled:
        raise RawDatasetError(f"{label_dir}: no label for {len(unlabelled)} image(s), e.g. {unlabelled[0]}{ending}")
    without_image = sorted(set(label_files) - set(image_files))
    if without_image:
        raise RawDatasetError(
            f"{label_files[without_image[0]]}: a label without its image"
            f" {image_dir.name}/{without_image[0]}{FIRST_CHANNEL}{ending}"
        )
    return [Case(name, image_files[name], label_files[name]) for name in sorted(image_files) if name in label_files]
