"""Check a raw nnU-Net dataset before planning, every file read the way the other commands read it.

nnU-Net's own check (`verify_dataset_integrity`) prints what it finds and then raises one
generic error for all of it, reads NIfTI through SimpleITK (a cut-off file passes, NaN reads as
0), and counts a case whose image is missing without naming it. This check covers the same
ground - the cases nnU-Net will train on (its own file listing), their channels, grids and label
values - and stops at the first bad case with one message naming the case, the file and the
problem. `plan` runs it instead of nnU-Net's, so that every file is read once for checking.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from meddinov3.datasets import REQUIRED_KEYS, DatasetJson, read_dataset_json
from meddinov3.images import ImageFileError, read_image
from meddinov3.nnunet.paths import NnUNetSetupError

# nnU-Net's own tolerance for "same spacing" (np.allclose defaults).
SPACING_RTOL, SPACING_ATOL = 1e-5, 1e-8


@dataclass(frozen=True)
class CaseFiles:
    case: str
    images: tuple[str, ...]  # one per channel, in channel order
    label: str


def training_cases(folder: Path, description: DatasetJson) -> list[CaseFiles]:
    """The cases nnU-Net will train on, listed as nnU-Net lists them; a label without an image is named."""
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

    dataset_json = description.raw
    listed = get_filenames_of_train_images_and_targets(str(folder), dataset_json)
    cases = [CaseFiles(case, tuple(files["images"]), files["label"]) for case, files in sorted(listed.items())]
    if "dataset" not in dataset_json:
        ending = dataset_json["file_ending"]
        labelled = {p.name[: -len(ending)] for p in (folder / "labelsTr").glob(f"*{ending}")}
        unpaired = sorted(labelled - set(listed))
        if unpaired:
            case = unpaired[0]
            others = f" (and {len(unpaired) - 1} more case(s))" if len(unpaired) > 1 else ""
            raise NnUNetSetupError(
                f"case {case}: {folder / 'labelsTr' / (case + ending)} has no image in {folder / 'imagesTr'}"
                f" (expected {case}_0000{ending}){others}"
            )
    if len(cases) != description.num_training:
        raise NnUNetSetupError(
            f"{description.path}: numTraining is {description.num_training}, but {len(cases)}"
            f" labelled case(s) are there"
        )
    return cases


def check_case(files: CaseFiles, num_channels: int, allowed: set[int]) -> None:
    """One case: a file per channel, every file whole and finite, images on the label's grid,
    only known label values. Errors name the case and the file."""
    import SimpleITK as sitk

    from meddinov3.evaluation.folder import present_labels
    from meddinov3.evaluation.reading import as_label_array

    case = files.case
    if len(files.images) != num_channels:
        raise NnUNetSetupError(
            f"case {case}: {len(files.images)} image file(s) for {num_channels} channel(s): "
            f"{[Path(f).name for f in files.images]}"
        )
    try:
        label = read_image(files.label, dimensions=(2, 3))
        for file in files.images:
            image = read_image(file, dimensions=(2, 3))
            if image.GetSize() != label.GetSize():
                raise NnUNetSetupError(
                    f"case {case}: image {Path(file).name} has size {image.GetSize()}, its label"
                    f" {Path(files.label).name} {label.GetSize()}"
                )
            if not np.allclose(image.GetSpacing(), label.GetSpacing(), rtol=SPACING_RTOL, atol=SPACING_ATOL):
                raise NnUNetSetupError(
                    f"case {case}: label {files.label} has spacing {label.GetSpacing()}, its image"
                    f" {Path(file).name} {image.GetSpacing()}"
                )
    except ImageFileError as error:
        raise NnUNetSetupError(f"case {case}: {error}") from None
    values = present_labels(as_label_array(sitk.GetArrayViewFromImage(label), Path(files.label), case))
    unknown = sorted(values - allowed)
    if unknown:
        raise NnUNetSetupError(
            f"case {case}: {files.label} holds label value(s) {unknown} that dataset.json does not define"
            f" ({sorted(allowed)})"
        )


def verify_raw_dataset(folder: str | Path, num_processes: int = 1) -> int:
    """Check every training case of the raw dataset in `folder`; returns the number of cases."""
    folder = Path(folder)
    description = read_dataset_json(folder, REQUIRED_KEYS)
    cases = training_cases(folder, description)
    allowed = set(description.label_values)
    channels = description.num_channels
    if num_processes <= 1 or len(cases) <= 1:
        for files in cases:
            check_case(files, channels, allowed)
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(num_processes, len(cases)), mp_context=context) as pool:
            # map yields in case order: the first bad case (by name) is the one reported.
            list(pool.map(check_case, cases, [channels] * len(cases), [allowed] * len(cases)))
    return len(cases)
