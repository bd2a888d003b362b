"""Write a release plan as an nnU-Net v2 raw dataset folder.

Every file is written atomically, so a file that exists is complete: an interrupted conversion
is resumed by running it again, which skips the cases already written. dataset.json is written
last, so a folder with a dataset.json holds every case it lists.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from meddinov3.convert.errors import ConversionError
from meddinov3.convert.layout import CaseSource, ReleasePlan
from meddinov3.convert.volumes import NIFTI_ENDING, check_same_grid, copy_image, copy_label
from meddinov3.io import atomic_write_text

MAX_DATASET_ID = 999


def dataset_folder_name(dataset_id: int, name: str) -> str:
    if not 1 <= dataset_id <= MAX_DATASET_ID:
        raise ConversionError(f"dataset id must be between 1 and {MAX_DATASET_ID}, got {dataset_id}")
    return f"Dataset{dataset_id:03d}_{name}"


def check_id_is_free(raw_root: Path, dataset_id: int, folder_name: str) -> None:
    """nnU-Net finds datasets by id, so another dataset with the same id would make it ambiguous."""
    if not raw_root.is_dir():
        return
    taken = [p.name for p in raw_root.glob(f"Dataset{dataset_id:03d}_*") if p.is_dir() and p.name != folder_name]
    if taken:
        raise ConversionError(f"{raw_root}: dataset id {dataset_id} is already used by {taken[0]}; choose another id")


def check_unique_cases(plan: ReleasePlan) -> None:
    seen: dict[str, Path] = {}
    for case in [*plan.training, *plan.test]:
        if case.case_id in seen:
            raise ConversionError(f"case {case.case_id} appears twice: {seen[case.case_id]} and {case.image}")
        seen[case.case_id] = case.image
    if not plan.training:
        raise ConversionError("no labelled training cases found")


def dataset_json(plan: ReleasePlan) -> dict[str, object]:
    info = plan.description
    content: dict[str, object] = {
        "channel_names": info.channel_names,
        "labels": info.labels,
        "numTraining": len(plan.training),
        "file_ending": NIFTI_ENDING,
        "name": info.name,
        "reference": info.reference,
        "description": info.description,
        **info.extra,
    }
    if info.reader_writer:
        content["overwrite_image_reader_writer"] = info.reader_writer
    return content


def write_case(case: CaseSource, folder: Path, allowed: frozenset[int], overwrite: bool) -> None:
    """Image (and label) of one case; files that already exist are kept unless `overwrite`."""
    images, labels = ("imagesTr", "labelsTr") if case.label is not None else ("imagesTs", None)
    image_target = folder / images / f"{case.case_id}_0000{NIFTI_ENDING}"
    if case.label is not None:
        label_target = folder / labels / f"{case.case_id}{NIFTI_ENDING}"
        if overwrite or not label_target.exists():
            check_same_grid(case.image, case.label)
            copy_label(case.label, label_target, allowed)
    if overwrite or not image_target.exists():
        copy_image(case.image, image_target)


def write_dataset(
    plan: ReleasePlan,
    raw_root: Path,
    dataset_id: int,
    overwrite: bool = False,
    on_case: Callable[[str], None] | None = None,
) -> Path:
    """Write `plan` into `raw_root/DatasetXXX_Name`; returns that folder."""
    check_unique_cases(plan)
    folder = Path(raw_root) / dataset_folder_name(dataset_id, plan.description.name)
    check_id_is_free(Path(raw_root), dataset_id, folder.name)
    allowed = plan.description.allowed_label_values
    for case in [*plan.training, *plan.test]:
        write_case(case, folder, allowed, overwrite)
        if on_case is not None:
            on_case(case.case_id)
    atomic_write_text(folder / "dataset.json", json.dumps(dataset_json(plan), indent=2) + "\n")
    return folder
