"""AMOS22: imagesTr/labelsTr, imagesVa/labelsVa, imagesTs, dataset.json; files amos_XXXX.nii.gz.

Scan numbers 1-500 are CT and 501-600 MRI (the release numbers them that way). The paper trains
on all 360 labelled scans (training + validation split, 300 CT + 60 MRI). Mixed CT/MRI data
cannot use nnU-Net's CT normalisation (global HU statistics), so the mixed dataset declares a
non-CT channel (per-image z-score); `modality="ct"` keeps only CT scans with CT normalisation.
"""

from __future__ import annotations

import json
from pathlib import Path

from meddinov3.convert.errors import ConversionError
from meddinov3.convert.layout import CaseSource, DatasetDescription, ReleasePlan, labels_from_names
from meddinov3.convert.scan import numbered_files, paired, require_folder

ORGANS = [
    "spleen", "right kidney", "left kidney", "gall bladder", "esophagus", "liver", "stomach", "aorta",
    "postcava", "pancreas", "right adrenal gland", "left adrenal gland", "duodenum", "bladder",
    "prostate/uterus",
]
LAST_CT_NUMBER = 500
MODALITIES = ("all", "ct", "mri")
_CHANNEL = {"all": "CT_or_MRI", "ct": "CT", "mri": "MRI"}
_NAME = {"all": "AMOS22", "ct": "AMOS22CT", "mri": "AMOS22MRI"}
_LABELLED_SPLITS = (("imagesTr", "labelsTr"), ("imagesVa", "labelsVa"))
_PATTERN = r"amos_(\d+)"


def is_ct(number: int) -> bool:
    return number <= LAST_CT_NUMBER


def wanted(number: int, modality: str) -> bool:
    return modality == "all" or (modality == "ct") == is_ct(number)


def check_release_labels(raw_dir: Path) -> None:
    """If the release's dataset.json is there, its label values must be AMOS's 0-15."""
    path = raw_dir / "dataset.json"
    if not path.is_file():
        return
    try:
        labels = json.loads(path.read_text(encoding="utf-8"))["labels"]
        values = sorted(int(value) for value in labels)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConversionError(f"{path}: not an AMOS dataset.json with a 'labels' mapping ({error})") from error
    if values != list(range(len(ORGANS) + 1)):
        raise ConversionError(f"{path}: label values {values} are not AMOS22's 0-{len(ORGANS)}")


def plan(raw_dir: Path, modality: str = "all", include_test: bool = True) -> ReleasePlan:
    if modality not in MODALITIES:
        raise ConversionError(f"AMOS22 modality must be one of {MODALITIES}, got {modality!r}")
    raw_dir = require_folder(Path(raw_dir), "AMOS22 release")
    check_release_labels(raw_dir)
    if not (raw_dir / "imagesTr").is_dir():
        raise ConversionError(f"{raw_dir}: no imagesTr folder; pass the folder that holds imagesTr, labelsTr, imagesVa")
    training = []
    for images, labels in _LABELLED_SPLITS:
        if not (raw_dir / images).is_dir():
            continue
        found = paired(
            numbered_files(raw_dir / images, _PATTERN),
            numbered_files(require_folder(raw_dir / labels, "AMOS22 " + labels), _PATTERN),
            raw_dir / images,
        )
        training += [CaseSource(f"amos_{n:04d}", img, lab) for n, img, lab in found if wanted(n, modality)]
    test = []
    if include_test and (raw_dir / "imagesTs").is_dir():
        test = [
            CaseSource(f"amos_{n:04d}", img)
            for n, img in numbered_files(raw_dir / "imagesTs", _PATTERN).items()
            if wanted(n, modality)
        ]
    description = DatasetDescription(
        name=_NAME[modality],
        channel_names={"0": _CHANNEL[modality]},
        labels=labels_from_names(ORGANS),
        reference="AMOS22 (Ji et al., NeurIPS 2022)",
        description=f"AMOS22 abdominal organs, {modality.upper() if modality != 'all' else 'CT and MRI'} scans"
        " of the training and validation splits",
    )
    return ReleasePlan(description, training, test)
