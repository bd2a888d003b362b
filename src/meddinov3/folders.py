"""Output folders: checked before the work starts, and never leaving old results to pass for new
ones."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterable

from meddinov3.errors import InputError
from meddinov3.filenames import name_problem, shown

STALE_SUFFIX = ".stale"


def writable_folder(path: str | Path, what: str = "output folder") -> Path:
    """`path` as a folder this process can write into, created if missing; checked before a job
    starts, so that an unusable output stops it at once rather than after the work. Raises an
    InputError naming `what` (e.g. "--out") and the folder."""
    path = Path(path)
    if name_problem(path):  # SimpleITK writes label maps there
        raise InputError(f"{what} {shown(path)}: {name_problem(path)}")
    if path.exists() and not path.is_dir():
        raise InputError(f"{what} {path}: is a file; expected a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise InputError(f"{what} {path}: cannot write into this folder ({error.strerror or error})") from None
    return path


def mark_stale(folder: Path, names: Iterable[str]) -> list[Path]:
    """Rename the existing `folder/name` files to `name.stale`: results of an earlier run that
    this one is about to replace must not pass for its own if it fails."""
    moved = []
    for name in names:
        if (folder / name).is_file():
            moved.append((folder / name).replace(folder / f"{name}{STALE_SUFFIX}"))
    return moved
