"""`curate --check CORPUS --exclude DATASET`: which volumes of an existing corpus are benchmark cases.

Reads the corpus manifest (one line per curated volume, with its source and, since fingerprints
exist, its slice digests) and changes nothing. A volume curated before its digests were recorded
is fingerprinted from its source file again when that file is still there, and reported as
unchecked when it is not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from meddinov3.curate.exclusion import ExclusionIndex, Match, build_index
from meddinov3.curate.sources import Source, dicom_series_in
from meddinov3.curate.worker import DIGESTS


@dataclass
class CheckReport:
    corpus: str
    datasets: tuple[str, ...]
    volumes: int = 0
    overlaps: list[tuple[str, Match]] = field(default_factory=list)  # (source, match)
    unchecked: list[tuple[str, str]] = field(default_factory=list)  # (source, why)


def source_of(record: dict[str, Any]) -> Source | None:
    """The manifest line's source as discovery finds it, or None when it is gone."""
    path = Path(record["path"])
    if record.get("kind") == "dicom":
        if not path.is_dir():
            return None
        return next((s for s in dicom_series_in(path) if s.series_uid == record.get("series_uid")), None)
    return Source(record.get("kind", "image"), str(path)) if path.is_file() else None


def recorded_or_fresh_digests(record: dict[str, Any], size: int) -> tuple[list[str | None] | None, str]:
    """The record's digests, else the source's read again; (None, why) when neither is there."""
    from meddinov3.curate.fingerprint import slice_digests
    from meddinov3.curate.reading import UnreadableSource, read_volume

    if record.get(DIGESTS) is not None:
        return record[DIGESTS], ""
    source = source_of(record)
    if source is None:
        return None, f"curated without fingerprints and its source {record['path']} is gone"
    try:
        volume = read_volume(source, size)  # kept: its voxels may be a view into the image it holds
        return slice_digests(volume.voxels), ""
    except UnreadableSource as error:
        return None, f"curated without fingerprints and its source cannot be read: {error}"


def check_corpus(
    corpus: str | Path, folders: Sequence[str], workers: int = 1, on_image: Callable[[], None] | None = None
) -> CheckReport:
    """Overlap of the corpus with the benchmark datasets in `folders` (nnU-Net raw dataset folders)."""
    from meddinov3.curate.corpus import SliceCorpus

    try:
        slices = SliceCorpus(corpus)
    except FileNotFoundError as error:
        from meddinov3.errors import InputError

        raise InputError(f"--check: {error}") from None
    index: ExclusionIndex = build_index(folders, corpus, workers, on_image)
    report = CheckReport(str(corpus), index.datasets, volumes=len(slices.records))
    for record in slices.records:
        digests, why = recorded_or_fresh_digests(record.raw, slices.size)
        if digests is None:
            report.unchecked.append((record.source, why))
            continue
        match = index.match(digests)
        if match is not None:
            report.overlaps.append((record.source, match))
    return report
