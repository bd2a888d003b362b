"""BTCV (Synapse multi-organ CT, "RawData"): Training/img/imgXXXX.nii.gz, Training/label/labelXXXX.nii.gz.

Thirteen organs; Testing/img holds the unlabelled challenge test scans.
"""

from __future__ import annotations

from pathlib import Path

from meddinov3.convert.errors import ConversionError
from meddinov3.convert.layout import CaseSource, DatasetDescription, ReleasePlan, labels_from_names
from meddinov3.convert.scan import numbered_files, paired, require_folder

ORGANS = [
    "spleen", "right kidney", "left kidney", "gallbladder", "esophagus", "liver", "stomach", "aorta",
    "inferior vena cava", "portal and splenic veins", "pancreas", "right adrenal gland", "left adrenal gland",
]


def release_root(raw_dir: Path) -> Path:
    """The folder holding Training/ (users may point at RawData/ or at the folder above it)."""
    for candidate in (raw_dir, raw_dir / "RawData"):
        if (candidate / "Training").is_dir():
            return candidate
    raise ConversionError(f"{raw_dir}: no Training/ folder (expected Training/img and Training/label)")


def plan(raw_dir: Path, include_test: bool = True) -> ReleasePlan:
    root = release_root(require_folder(Path(raw_dir), "BTCV release"))
    images = require_folder(root / "Training" / "img", "BTCV Training/img")
    labels = require_folder(root / "Training" / "label", "BTCV Training/label")
    found = paired(numbered_files(images, r"img(\d+)"), numbered_files(labels, r"label(\d+)"), images)
    training = [CaseSource(f"btcv_{n:04d}", img, lab) for n, img, lab in found]
    test = []
    if include_test and (root / "Testing" / "img").is_dir():
        test = [CaseSource(f"btcv_{n:04d}", img) for n, img in numbered_files(root / "Testing" / "img", r"img(\d+)").items()]
    description = DatasetDescription(
        name="BTCV",
        channel_names={"0": "CT"},
        labels=labels_from_names(ORGANS),
        reference="Multi-Atlas Labeling Beyond the Cranial Vault (BTCV), MICCAI 2015",
        description="BTCV abdominal CT, 13 organs",
    )
    return ReleasePlan(description, training, test)
