"""Pair prediction files with reference files by case name.

A case is a file name without its image suffix, so `case_001.nii.gz` in the reference folder
pairs with `case_001.nii.gz` (or `case_001.nrrd`) in the prediction folder. Other files that
nnU-Net leaves in folders (dataset.json, plans.json, .npz, .pkl) are not images and are skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from meddinov3.datasets import IMAGE_SUFFIXES, images_by_case
from meddinov3.evaluation.errors import EvaluationError


@dataclass(frozen=True)
class CasePair:
    case: str
    pred: Path
    ref: Path


def pair_cases(pred_dir: Path, ref_dir: Path, file_ending: str | None = None) -> tuple[list[CasePair], list[str]]:
    """Every reference case with its prediction, and the prediction cases that have no reference.

    Raises EvaluationError listing every reference case that has no prediction.
    """
    ref_suffixes = (file_ending,) if file_ending else IMAGE_SUFFIXES
    references = images_by_case(ref_dir, ref_suffixes)
    if not references:
        raise EvaluationError(f"no reference images ({', '.join(ref_suffixes)}) in {ref_dir}")
    predictions = images_by_case(pred_dir, tuple(dict.fromkeys(ref_suffixes + IMAGE_SUFFIXES)))
    missing = sorted(set(references) - set(predictions))
    if missing:
        shown = ", ".join(missing[:20]) + (f" and {len(missing) - 20} more" if len(missing) > 20 else "")
        raise EvaluationError(f"no prediction in {pred_dir} for {len(missing)} reference case(s): {shown}")
    pairs = [CasePair(case, predictions[case], references[case]) for case in sorted(references)]
    return pairs, sorted(set(predictions) - set(references))


def check_folders(pred_dir: Path, ref_dir: Path, tolerance_mm: float) -> None:
    """The checks that need no image read (nor scipy or SimpleITK): a job stops on them at once."""
    if not math.isfinite(tolerance_mm) or tolerance_mm < 0:
        raise EvaluationError(f"tolerance must be finite and >= 0 mm, got {tolerance_mm}")
    for name, folder in (("prediction", pred_dir), ("reference", ref_dir)):
        if not folder.is_dir():
            raise EvaluationError(f"{name} folder {folder} does not exist or is not a folder")
    if pred_dir.resolve() == ref_dir.resolve():
        raise EvaluationError(
            f"the prediction and reference folders are the same folder ({ref_dir}): every case would score 100%"
        )
