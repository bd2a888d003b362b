"""A small CT-like dataset in nnU-Net's raw format, for tests, demos and learning checks.

Each case is an anisotropic volume (thick axial slices) with air around a soft-tissue body and
three "organs" of distinct Hounsfield values whose position and size vary per case, so a
network has to look at the image (not memorise a location) to segment them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from meddinov3.io import atomic_write, atomic_write_text

LABELS = {"background": 0, "liver": 1, "kidney": 2, "bone": 3}
_HU = {"air": -1000.0, "body": -100.0, "liver": 60.0, "kidney": 200.0, "bone": 700.0}


@dataclass(frozen=True)
class SyntheticDatasetSpec:
    dataset_id: int = 987
    name: str = "SyntheticCT"
    num_training: int = 5
    num_test: int = 1
    shape_zyx: tuple[int, int, int] = (8, 64, 64)
    spacing_zyx: tuple[float, float, float] = (3.0, 0.8, 0.8)
    noise_hu: float = 15.0
    seed: int = 0

    @property
    def folder_name(self) -> str:
        return f"Dataset{self.dataset_id:03d}_{self.name}"


def _ellipsoid(grid: tuple[np.ndarray, ...], center: np.ndarray, radii: np.ndarray) -> np.ndarray:
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, center, radii)) <= 1.0


def synthetic_case(spec: SyntheticDatasetSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One (image in HU, label map) pair of shape `spec.shape_zyx`, both float32 / uint8."""
    nz, ny, nx = spec.shape_zyx
    grid = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    size = np.array([nz, ny, nx], dtype=float)

    image = np.full(spec.shape_zyx, _HU["air"], dtype=np.float32)
    label = np.zeros(spec.shape_zyx, dtype=np.uint8)

    body = _ellipsoid(grid, size / 2, size * np.array([0.9, 0.42, 0.45]))
    image[body] = _HU["body"]

    # (organ, relative centre, relative radii, centre jitter, size jitter)
    organs = [
        ("liver", (0.5, 0.45, 0.33), (0.45, 0.16, 0.15), 0.04, 0.2),
        ("kidney", (0.5, 0.62, 0.68), (0.35, 0.08, 0.07), 0.04, 0.2),
        ("bone", (0.5, 0.72, 0.5), (0.9, 0.06, 0.06), 0.02, 0.1),
    ]
    for organ, rel_center, rel_radii, shift, scale in organs:
        center = size * (np.array(rel_center) + rng.uniform(-shift, shift, 3))
        radii = size * np.array(rel_radii) * rng.uniform(1 - scale, 1 + scale)
        mask = _ellipsoid(grid, center, radii) & body
        image[mask] = _HU[organ]
        label[mask] = LABELS[organ]

    image += rng.normal(0.0, spec.noise_hu, image.shape).astype(np.float32)
    return image, label


def _write_nifti(array: np.ndarray, spacing_zyx: tuple[float, ...], path: Path) -> None:
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(array)
    img.SetSpacing(tuple(float(s) for s in reversed(spacing_zyx)))
    img.SetOrigin((-25.0, -30.0, 100.0))
    atomic_write(path, lambda tmp: sitk.WriteImage(img, tmp, True), ending=".nii.gz")


def write_synthetic_dataset(raw_root: str | os.PathLike, spec: SyntheticDatasetSpec = SyntheticDatasetSpec()) -> Path:
    """Write `spec.num_training` labelled cases plus `spec.num_test` unlabelled test cases.

    Layout: <raw_root>/DatasetXXX_Name/{imagesTr,labelsTr,imagesTs,labelsTs}, dataset.json.
    Test labels go to labelsTs so that predictions can be scored. Returns the dataset folder.
    """
    folder = Path(raw_root) / spec.folder_name
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    for i in range(spec.num_training + spec.num_test):
        image, label = synthetic_case(spec, rng)
        is_test = i >= spec.num_training
        images, labels = ("imagesTs", "labelsTs") if is_test else ("imagesTr", "labelsTr")
        case = f"case{i:03d}"
        _write_nifti(image, spec.spacing_zyx, folder / images / f"{case}_0000.nii.gz")
        _write_nifti(label, spec.spacing_zyx, folder / labels / f"{case}.nii.gz")
    dataset_json = {
        "channel_names": {"0": "CT"},
        "labels": LABELS,
        "numTraining": spec.num_training,
        "file_ending": ".nii.gz",
        "name": spec.name,
    }
    atomic_write_text(folder / "dataset.json", json.dumps(dataset_json, indent=2))
    return folder
