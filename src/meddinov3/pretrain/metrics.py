"""metrics.jsonl: one JSON line per pretraining iteration (losses, schedules, learning monitors)."""

from __future__ import annotations

import json
from pathlib import Path

METRICS_NAME = "metrics.jsonl"


def read_metrics(path: Path) -> list[dict[str, float]]:
    """The lines written so far (a line still being written is skipped)."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip().endswith("}")]
