"""What a converter finds in a release: the target dataset's description and its cases."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class CaseSource:
    """One case of the release: its image and (for training cases) its label file."""

    case_id: str
    image: Path
    label: Path | None = None


@dataclass(frozen=True)
class DatasetDescription:
    """The dataset.json facts of a converted release.

    `labels` maps names to values as nnU-Net v2 writes them ({"background": 0, ...}).
    `channel_names` decides nnU-Net's intensity normalisation: "CT" uses the dataset's global HU
    statistics, anything else a per-image z-score (needed whenever MRI is present).
    """

    name: str
    channel_names: dict[str, str]
    labels: dict[str, int]
    reference: str
    description: str
    reader_writer: str | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def allowed_label_values(self) -> frozenset[int]:
        return frozenset(self.labels.values())


@dataclass(frozen=True)
class ReleasePlan:
    """Everything needed to write the nnU-Net dataset: description, labelled and unlabelled cases."""

    description: DatasetDescription
    training: list[CaseSource]
    test: list[CaseSource] = field(default_factory=list)


def labels_from_names(names: list[str]) -> dict[str, int]:
    """{"background": 0, names[0]: 1, ...}: the releases number their structures from 1 in order."""
    return {"background": 0, **{name: value for value, name in enumerate(names, start=1)}}
