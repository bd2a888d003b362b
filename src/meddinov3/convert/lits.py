"""LiTS: volume-N.nii and segmentation-N.nii (liver 1, tumor 2), often in "Training Batch 1/2" folders.

Files are searched in the release folder and every folder below it, so both the flat layout and
the two training batches work; test-volume-N.nii files become the unlabelled test set.
"""

from __future__ import annotations

import re
from pathlib import Path

from meddinov3.convert.errors import ConversionError
from meddinov3.convert.layout import CaseSource, DatasetDescription, ReleasePlan, labels_from_names
from meddinov3.convert.scan import NIFTI_SUFFIX, paired, require_folder

CLASSES = ["liver", "tumor"]
_VOLUME = re.compile(rf"^volume-(\d+){NIFTI_SUFFIX}$", re.IGNORECASE)
_SEGMENTATION = re.compile(rf"^segmentation-(\d+){NIFTI_SUFFIX}$", re.IGNORECASE)
_TEST_VOLUME = re.compile(rf"^test-volume-(\d+){NIFTI_SUFFIX}$", re.IGNORECASE)


def numbered_anywhere(root: Path, regex: re.Pattern) -> dict[int, Path]:
    found: dict[int, Path] = {}
    for path in sorted(root.rglob("*")):
        match = regex.match(path.name)
        if match is None or path.name.startswith(".") or not path.is_file():
            continue
        number = int(match.group(1))
        if number in found:
            raise ConversionError(f"LiTS case {number} appears twice: {found[number]} and {path}")
        found[number] = path
    return found


def plan(raw_dir: Path, include_test: bool = True) -> ReleasePlan:
    root = require_folder(Path(raw_dir), "LiTS release")
    volumes = numbered_anywhere(root, _VOLUME)
    if not volumes:
        raise ConversionError(f"{root}: no volume-N.nii files (looked in every folder below it)")
    found = paired(volumes, numbered_anywhere(root, _SEGMENTATION), root)
    training = [CaseSource(f"lits_{n:03d}", img, lab) for n, img, lab in found]
    test = []
    if include_test:
        test = [CaseSource(f"lits_test_{n:03d}", img) for n, img in numbered_anywhere(root, _TEST_VOLUME).items()]
    description = DatasetDescription(
        name="LiTS",
        channel_names={"0": "CT"},
        labels=labels_from_names(CLASSES),
        reference="The Liver Tumor Segmentation Benchmark (Bilic et al., MedIA 2023)",
        description="LiTS liver and liver tumour CT",
    )
    return ReleasePlan(description, training, test)
