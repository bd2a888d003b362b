"""Nested, seeded subsets of a fold's training cases: the labelled cases of a label-efficiency run
(`meddinov3 compare --train-cases`, and the demo's few-label comparison).

Every case gets a rank from a hash of (seed, case name); a subset of n cases is the n lowest
ranked. So the subsets are nested (the 2 cases of n=2 hold the case of n=1), the same for every
method, and the same on every machine and Python or NumPy version (no random-number stream whose
algorithm could change). A case added to the dataset later does not move the others.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from meddinov3.errors import InputError

ALL = "all"


class SubsetError(InputError, ValueError):
    """A subset that cannot be drawn (more cases asked for than the fold has)."""


@dataclass(frozen=True)
class Subset:
    count: int  # number of labelled training cases
    is_all: bool  # every training case of the fold: the fold's own (full-data) run
    cases: tuple[str, ...]  # sorted

    @property
    def label(self) -> str:
        return f"all ({self.count})" if self.is_all else str(self.count)

    @property
    def folder_name(self) -> str:
        return "train_all" if self.is_all else f"train_{self.count}"

    def to_dict(self) -> dict:
        return {"count": self.count, "all": self.is_all, "cases": list(self.cases)}


def case_order(cases: Sequence[str], seed: int) -> list[str]:
    """The cases ranked by a hash of the seed and their name (ties impossible: names are unique)."""
    def rank(case: str) -> bytes:
        return hashlib.sha256(f"{seed}\0{case}".encode("utf-8")).digest()

    return sorted(set(cases), key=rank)


def nested_subsets(cases: Sequence[str], counts: Sequence[int | str], seed: int) -> list[Subset]:
    """One subset per distinct count, smallest first; a count equal to the number of cases is 'all'."""
    order = case_order(cases, seed)
    total = len(order)
    too_many = sorted(c for c in counts if c != ALL and c > total)
    if too_many:
        raise SubsetError(
            f"--train-cases {too_many[0]}: the fold has only {total} training case(s); use at most {total} or 'all'"
        )
    sizes = sorted({total if c == ALL else int(c) for c in counts})
    return [Subset(n, n == total, tuple(sorted(order[:n]))) for n in sizes]
