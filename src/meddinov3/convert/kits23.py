"""KiTS23: dataset/case_XXXXX/imaging.nii.gz and segmentation.nii.gz; kidney 1, tumor 2, cyst 3.

Labels are kept as the three plain classes (not nnU-Net's KiTS regions kidney+masses+tumor):
the paper's 2D setting reports per-class DSC/NSD, and the evaluation scores plain labels. The
images use nnU-Net's reorienting NIfTI reader, as nnU-Net's own KiTS23 conversion does.
"""

from __future__ import annotations

import re
from pathlib import Path

from meddinov3.convert.errors import ConversionError
from meddinov3.convert.layout import CaseSource, DatasetDescription, ReleasePlan, labels_from_names
from meddinov3.convert.scan import require_folder

CLASSES = ["kidney", "tumor", "cyst"]
_CASE = re.compile(r"^case_\d{5}$")


def cases_folder(raw_dir: Path) -> Path:
    """The folder holding case_XXXXX/ (the repository's `dataset/` or that folder itself)."""
    for candidate in (raw_dir / "dataset", raw_dir):
        if candidate.is_dir() and any(_CASE.match(p.name) for p in candidate.iterdir()):
            return candidate
    raise ConversionError(f"{raw_dir}: no case_XXXXX folders (expected dataset/case_00000/imaging.nii.gz)")


def case_source(folder: Path) -> CaseSource:
    image, label = folder / "imaging.nii.gz", folder / "segmentation.nii.gz"
    if not image.is_file():
        raise ConversionError(f"{folder}: imaging.nii.gz missing")
    if not label.is_file():
        raise ConversionError(f"{folder}: segmentation.nii.gz missing")
    return CaseSource(folder.name, image, label)


def plan(raw_dir: Path) -> ReleasePlan:
    root = cases_folder(require_folder(Path(raw_dir), "KiTS23 release"))
    training = [case_source(p) for p in sorted(root.iterdir()) if p.is_dir() and _CASE.match(p.name)]
    description = DatasetDescription(
        name="KiTS23",
        channel_names={"0": "CT"},
        labels=labels_from_names(CLASSES),
        reference="KiTS23 challenge (Heller et al.)",
        description="KiTS23 kidney, tumor and cyst in corticomedullary-phase CT (plain labels)",
        reader_writer="NibabelIOWithReorient",
    )
    return ReleasePlan(description, training)
