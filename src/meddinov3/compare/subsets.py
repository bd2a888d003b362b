"""`--train-cases 1,2,5,all`: the counts of labelled cases a label-efficiency run trains on. The
subsets themselves are drawn by `meddinov3.nnunet.subsets` (nested, seeded, the same for every
method)."""

from __future__ import annotations

from meddinov3.compare.results import ComparisonError
from meddinov3.nnunet.subsets import ALL


def parse_counts(text: str) -> list[int | str]:
    """`1,2,5,all` -> [1, 2, 5, 'all']; an error names the entry that is neither."""
    counts: list[int | str] = []
    for item in (part.strip().lower() for part in text.split(",")):
        if not item:
            continue
        if item == ALL:
            counts.append(ALL)
            continue
        try:
            value = int(item)
        except ValueError:
            raise ComparisonError(f"--train-cases: {item!r} is neither a number of cases nor 'all'") from None
        if value < 1:
            raise ComparisonError(f"--train-cases: {value} cases is not a training set; counts start at 1")
        counts.append(value)
    if not counts:
        raise ComparisonError("--train-cases: name at least one count, e.g. 1,2,5,all")
    return counts
