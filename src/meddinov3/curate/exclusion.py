"""Does a source volume hold a benchmark case? Its slice digests looked up among the benchmarks'.

A source matches a benchmark image when they share at least one informative slice: the same
voxel values, whatever the file (see `fingerprint.py`). A match names the dataset, the case and
the file, how many of the source's slices it shares, and whether the source is that image whole
(every slice, in order) or a part of it (e.g. cut to fewer slices).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

from meddinov3.curate.benchmarks import fingerprint_dataset, index_path, read_index_file
from meddinov3.io import atomic_write_text


@dataclass(frozen=True)
class Match:
    dataset: str
    case: str
    file: str
    shared_slices: int
    source_slices: int
    identical: bool  # the whole benchmark image, slice for slice

    def reason(self) -> str:
        what = "is" if self.identical else f"shares {self.shared_slices} of its {self.source_slices} slices with"
        return f"benchmark case: {what} {self.dataset} case {self.case} ({self.file})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ExclusionIndex:
    """Slice digest -> the benchmark images holding that slice, over every excluded dataset."""

    def __init__(self, indexes: Sequence[dict[str, Any]]):
        self.images: list[tuple[str, dict[str, Any]]] = [(ix["dataset"], e) for ix in indexes for e in ix["images"]]
        self.datasets = tuple(ix["dataset"] for ix in indexes)
        self.where: dict[str, list[int]] = {}
        for number, (_, entry) in enumerate(self.images):
            for digest in set(entry["digests"]) - {None}:
                self.where.setdefault(digest, []).append(number)

    def match(self, digests: Sequence[str | None]) -> Match | None:
        """The benchmark image sharing the most informative slices with `digests`, if any does."""
        shared: Counter[int] = Counter()
        for digest in set(digests) - {None}:
            shared.update(self.where.get(digest, ()))
        if not shared:
            return None
        number, count = min(shared.items(), key=lambda item: (-item[1], item[0]))
        dataset, entry = self.images[number]
        identical = list(digests) == list(entry["digests"])
        return Match(dataset, entry["case"], entry["file"], count, len(digests), identical)


def prepare_exclusions(
    corpus: str | Path, folders: Sequence[str], workers: int = 1, on_image: Callable[[], None] | None = None
) -> list[Path]:
    """Fingerprint the benchmark datasets in `folders` into CORPUS/exclusions (unchanged files reused)."""
    written = []
    for folder in map(Path, folders):
        path = index_path(Path(corpus), folder.name)
        index = fingerprint_dataset(folder, read_index_file(path), workers, on_image)
        text = json.dumps(index) + "\n"
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            atomic_write_text(path, text)
        written.append(path)
    return written


def build_index(
    folders: Sequence[str], corpus: str | Path | None = None, workers: int = 1, on_image: Callable[[], None] | None = None
) -> ExclusionIndex:
    """The index of `folders` in memory; fingerprints kept in `corpus` are reused, nothing is written."""
    indexes = []
    for folder in map(Path, folders):
        earlier = read_index_file(index_path(Path(corpus), folder.name)) if corpus is not None else {}
        indexes.append(fingerprint_dataset(folder, earlier, workers, on_image))
    return ExclusionIndex(indexes)


@lru_cache(maxsize=2)
def _load(paths: tuple[str, ...], stamps: tuple[int, ...]) -> ExclusionIndex:
    return ExclusionIndex([json.loads(Path(p).read_text(encoding="utf-8")) for p in paths])


def stored_index(corpus: str | Path, folders: Sequence[str]) -> ExclusionIndex | None:
    """The index `prepare_exclusions` wrote for `folders` (read once per process); None when none are excluded."""
    if not folders:
        return None
    paths = tuple(str(index_path(Path(corpus), Path(folder).name)) for folder in folders)
    return _load(paths, tuple(Path(p).stat().st_mtime_ns for p in paths))
