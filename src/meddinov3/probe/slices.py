"""Axial slices as the probe sees them: HU resized to size x size, labels as class indices.

Training slices are a seeded subsample of imagesTr: most carry foreground, some do not, so the
head learns organs and also learns to leave slices above and below them empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from meddinov3.datasets import IGNORE_LABEL_NAME, Case, DatasetLabels
from meddinov3.intensity import normalize_ct
from meddinov3.probe.splits import ProbeDatasetError

# Target value of pixels the loss skips (nnU-Net's ignore label); labels are stored as uint8.
IGNORE_INDEX = 255


@dataclass(frozen=True)
class ClassSet:
    """Label value v is class v (nnU-Net labels are consecutive from 0); the ignore label is skipped."""

    num_classes: int
    ignore_value: int | None

    @classmethod
    def of(cls, labels: DatasetLabels) -> "ClassSet":
        ignore = [v for v, name in labels.names.items() if name == IGNORE_LABEL_NAME]
        values = sorted(v for v in labels.names if v not in ignore)
        if values != list(range(len(values))):
            raise ProbeDatasetError(f"labels {values} are not consecutive from 0, as nnU-Net requires")
        if len(values) >= IGNORE_INDEX:
            raise ProbeDatasetError(f"{len(values)} classes: the probe handles at most {IGNORE_INDEX - 1}")
        return cls(len(values), ignore[0] if ignore else None)

    def targets(self, label: np.ndarray, path: Path) -> np.ndarray:
        """Label values -> uint8 class indices, the ignore label -> IGNORE_INDEX."""
        if self.ignore_value is not None:
            label = np.where(label == self.ignore_value, IGNORE_INDEX, label)
        unknown = (label >= self.num_classes) & (label != IGNORE_INDEX)
        if unknown.any():
            raise ProbeDatasetError(f"{path}: label value {int(label[unknown].max())} is not in dataset.json")
        return label.astype(np.uint8)


def read_hu_volume(path: Path) -> np.ndarray:
    """(z, y, x) float32 intensities of an image file, read whole and finite (`meddinov3.images`)."""
    import SimpleITK as sitk

    from meddinov3.images import ImageFileError, read_image

    try:
        image = read_image(path)
    except ImageFileError as error:
        raise ProbeDatasetError(str(error)) from None
    return sitk.GetArrayFromImage(sitk.Cast(image, sitk.sitkFloat32))


def read_label_volume(path: Path) -> np.ndarray:
    """(z, y, x) integer labels of a label file."""
    from meddinov3.evaluation.reading import read_label_image

    return read_label_image(path, path.name).array


def image_shape(path: Path) -> tuple[int, ...]:
    """(z, y, x) size of an image, from its header alone."""
    from meddinov3.images import ImageFileError, read_header

    try:
        return read_header(path).shape
    except ImageFileError as error:
        raise ProbeDatasetError(str(error)) from None


def check_same_shape(case: Case) -> tuple[int, ...]:
    """The case's (z, y, x) shape; its image and label must agree on it."""
    image, label = image_shape(case.image), image_shape(case.label)
    if image != label:
        raise ProbeDatasetError(f"{case.label}: label shape {label} (z, y, x) differs from image {case.image.name} {image}")
    if len(image) != 3:
        raise ProbeDatasetError(f"{case.image}: a {len(image)}D image; the probe reads 3D volumes")
    return image


def choose_training_slices(
    foreground: dict[str, np.ndarray], max_slices: int, foreground_share: float, seed: int
) -> dict[str, np.ndarray]:
    """Sorted slice indices per case: up to `max_slices`, `foreground_share` of them with foreground
    where there are enough (the other kind fills any shortfall). Same inputs and seed, same slices."""
    cases = sorted(foreground)
    pool = {kind: [(c, z) for c in cases for z in np.flatnonzero(foreground[c] == kind)] for kind in (True, False)}
    wanted_fg = min(len(pool[True]), round(max_slices * foreground_share))
    wanted_bg = min(len(pool[False]), max_slices - wanted_fg)
    wanted_fg = min(len(pool[True]), max_slices - wanted_bg)
    rng = np.random.default_rng(seed)
    chosen: dict[str, list[int]] = {c: [] for c in cases}
    for kind, count in ((True, wanted_fg), (False, wanted_bg)):
        for i in rng.choice(len(pool[kind]), size=count, replace=False):
            case, z = pool[kind][i]
            chosen[case].append(int(z))
    return {c: np.asarray(sorted(zs), dtype=np.int64) for c, zs in chosen.items() if zs}


def resize_hu(hu: np.ndarray, size: int) -> Tensor:
    """(n, H, W) HU -> (n, size, size), bilinear, antialiased when shrinking (no aliasing at 512 -> 224)."""
    t = torch.from_numpy(np.ascontiguousarray(hu, dtype=np.float32))[:, None]
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)[:, 0]


def model_input(hu: np.ndarray, size: int, channels: int) -> Tensor:
    """(n, H, W) HU -> (n, channels, size, size): resized, then MedDINOv3's CT normalisation."""
    return normalize_ct(resize_hu(hu, size), channels)


def resize_targets(targets: np.ndarray, size: int) -> np.ndarray:
    """(n, H, W) uint8 class indices -> (n, size, size), nearest neighbour."""
    t = torch.from_numpy(np.ascontiguousarray(targets))[:, None]
    return F.interpolate(t, size=(size, size), mode="nearest-exact")[:, 0].numpy()
