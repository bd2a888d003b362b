"""Release name -> converter; each converter turns a release folder into a `ReleasePlan`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from meddinov3.convert import amos22, btcv, kits23, lits
from meddinov3.convert.errors import ConversionError
from meddinov3.convert.layout import ReleasePlan
from meddinov3.convert.writer import write_dataset

CONVERTERS: dict[str, Callable[..., ReleasePlan]] = {
    "amos22": amos22.plan,
    "btcv": btcv.plan,
    "kits23": kits23.plan,
    "lits": lits.plan,
}


def release_plan(release: str, raw_dir: Path, **options) -> ReleasePlan:
    key = release.lower()
    if key not in CONVERTERS:
        raise ConversionError(f"unknown release {release!r}; choose one of {', '.join(CONVERTERS)}")
    return CONVERTERS[key](Path(raw_dir), **options)


def convert_release(
    release: str,
    raw_dir: Path,
    dataset_id: int,
    raw_root: Path,
    overwrite: bool = False,
    on_case: Callable[[str], None] | None = None,
    **options,
) -> Path:
    """Convert one release folder into `raw_root/DatasetXXX_Name`; returns that folder."""
    return write_dataset(release_plan(release, raw_dir, **options), Path(raw_root), dataset_id, overwrite, on_case)
