"""Writing files safely: atomically (readers see the old file or the complete new one, never a
partial one), into output folders checked before the work, never leaving old results to pass
for new ones."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from meddinov3.errors import InputError

STALE_SUFFIX = ".stale"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[str], object]) -> Path:
    """Call `write(tmp_path)` on a temp file beside `path`, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        # mkstemp makes owner-only files; give the result the permissions of a normal new file.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def writable_folder(path: str | Path, what: str = "output folder") -> Path:
    """`path` as a folder this process can write into, created if missing; checked before a job
    starts, so that an unusable output stops it at once rather than after the work. Raises an
    InputError naming `what` (e.g. "--out") and the folder."""
    path = Path(path)
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
