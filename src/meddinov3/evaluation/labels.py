"""The labels an evaluation scores: dataset.json's (read by `meddinov3.datasets`), its problems
reported as the evaluation's own error."""

from __future__ import annotations

from pathlib import Path

from meddinov3.datasets import DatasetLabels, RawDatasetError, read_dataset_json
from meddinov3.evaluation.errors import EvaluationError


def read_dataset_labels(path: Path) -> DatasetLabels:
    try:
        return read_dataset_json(path).labels
    except RawDatasetError as error:
        raise EvaluationError(str(error)) from None
