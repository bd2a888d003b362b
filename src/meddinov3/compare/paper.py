"""The paper's published Table 2 numbers, read from `configs/paper_table2.yaml`."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

METRICS = ("dsc", "nsd")


@dataclass(frozen=True)
class PaperTable:
    source: str
    datasets: tuple[str, ...]
    aliases: dict[str, tuple[str, ...]]
    display_names: dict[str, str]
    values: dict[str, dict[str, dict[str, float]]]  # metric -> method -> dataset -> percent

    def dataset_for(self, dataset_name: str) -> str | None:
        """The paper dataset a folder name refers to (e.g. Dataset011_AMOS22 -> AMOS22), if any."""
        lowered = dataset_name.lower()
        matches = [d for d, keys in self.aliases.items() if any(key in lowered for key in keys)]
        # "lits" is inside no other alias, but a name could mention two datasets: then none is meant.
        return matches[0] if len(matches) == 1 else None

    def value(self, metric: str, method: str, dataset: str | None) -> float | None:
        if dataset is None:
            return None
        return self.values.get(metric, {}).get(method, {}).get(dataset)

    def display_name(self, method: str) -> str:
        return self.display_names.get(method, method)


def table_from_dict(data: dict) -> PaperTable:
    return PaperTable(
        source=str(data["source"]),
        datasets=tuple(data["datasets"]),
        aliases={name: tuple(keys) for name, keys in data["dataset_aliases"].items()},
        display_names=dict(data["display_names"]),
        values={
            metric: {method: {d: float(v) for d, v in per.items()} for method, per in data[metric].items()}
            for metric in METRICS
        },
    )


@lru_cache(maxsize=1)
def paper_table() -> PaperTable:
    import yaml

    text = (resources.files("meddinov3") / "configs" / "paper_table2.yaml").read_text(encoding="utf-8")
    return table_from_dict(yaml.safe_load(text))
