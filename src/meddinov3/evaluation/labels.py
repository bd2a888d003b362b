"""What dataset.json says about a dataset's labels and file ending.

nnU-Net v2 writes `"labels": {"background": 0, "liver": 1, ...}`; the older v1 layout is
`"labels": {"0": "background", "1": "liver"}`. Both are read. Region-based training
(`"liver": [1, 2]`) has no single label per voxel to score and is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from meddinov3.evaluation.errors import EvaluationError

# nnU-Net's ignore label marks unannotated voxels; it is no structure to score.
IGNORE_LABEL_NAME = "ignore"


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


def read_dataset_labels(path: Path) -> DatasetLabels:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise EvaluationError(f"{path}: cannot read dataset.json ({error})") from error
    labels = data.get("labels") if isinstance(data, dict) else None
    if not isinstance(labels, dict) or not labels:
        raise EvaluationError(f"{path}: dataset.json has no 'labels' mapping")
    names = _parse_label_mapping(labels, path)
    file_ending = data.get("file_ending")
    return DatasetLabels(names=names, file_ending=file_ending if isinstance(file_ending, str) else None)


def _parse_label_mapping(labels: dict, path: Path) -> dict[int, str]:
    if all(isinstance(key, str) and key.isdigit() and isinstance(v, str) for key, v in labels.items()):
        return {int(key): name for key, name in labels.items()}
    names: dict[int, str] = {}
    for name, value in labels.items():
        if isinstance(value, list):
            raise EvaluationError(
                f"{path}: label '{name}' is a region {value}; region-based labels are not supported"
            )
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise EvaluationError(f"{path}: label '{name}' has value {value!r}, expected an integer >= 0")
        if value in names:
            raise EvaluationError(f"{path}: labels '{names[value]}' and '{name}' share the value {value}")
        names[value] = name
    return names
