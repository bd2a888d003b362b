"""DSC, NSD and HD95 with the MedDINOv3 release's protocol, for one case or a folder of cases.

`evaluate_case` scores one pair of label arrays; `evaluate_folder` (also `meddinov3 evaluate`)
scores a folder of predictions against a folder of references and writes CSV/JSON reports.
Imports are lazy so that the CLI can import the command without scipy or SimpleITK.
"""

from __future__ import annotations

from typing import Any

__all__ = ["evaluate_case", "evaluate_folder", "EvaluationError"]

_HOMES = {
    "evaluate_case": "meddinov3.evaluation.case",
    "evaluate_folder": "meddinov3.evaluation.folder",
    "EvaluationError": "meddinov3.evaluation.errors",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'meddinov3.evaluation' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_HOMES[name]), name)
