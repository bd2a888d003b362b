"""Writing files safely: atomically (readers see the old file or the complete new one, never a
partial one) and checked (a write that failed is never renamed into place, even when the
library that wrote it did not notice). Output folders are checked and old results set aside in
`meddinov3.folders`.

What a full disk does without this: SimpleITK's NIfTI writer reports success after writing 0
bytes or a cut-off file; numpy's memory maps kill the process with SIGBUS; torch and Python
raise, leaving their temporary file. Here every file is written to a temporary name beside its
target, flushed to the disk (fsync), checked (not empty, and reading back as its type: see
`readback_problem`), and only then renamed; any failure removes the temporary file and raises
`WriteError`, which every command prints as one `error:` line naming the file.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any, Callable, Mapping

# Below this many free bytes a file system counts as full in messages (a failed write of a small
# file can leave a few blocks free).
_FULL_BELOW_BYTES = 1 << 20
_PNG_END = b"IEND\xaeB`\x82"


class WriteError(Exception):
    """An output file that could not be written whole; nothing was left under its name or a
    temporary one. The message names the file and why."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(str(path), reason)  # both in args: survives pickling between processes
        self.path, self.reason = str(path), reason

    def __str__(self) -> str:
        return f"{self.path}: not written: {self.reason}"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temporary_beside(path: Path, ending: str = "") -> Path:
    """A new empty file next to `path` for its contents; `ending` (e.g. ".nii.gz") ends its name,
    for writers that choose the format by the name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{ending}")
    except OSError as error:
        raise WriteError(path, describe(error, path)) from None
    os.close(fd)
    return Path(tmp)


def describe(error: BaseException, path: Path) -> str:
    """The reason a write failed, in words; a full file system is named as such."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on the device holding {path.parent} ({error.strerror})"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    # A library's own words (torch: "unexpected pos 768 vs 662"), and what they most likely mean.
    full = "; the file system is full" if _full(path.parent) else ""
    return f"the writer failed ({' '.join(str(error).split()) or type(error).__name__}){full}"


def _full(folder: Path) -> bool:
    try:
        stats = os.statvfs(folder)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < _FULL_BELOW_BYTES


def _gzip_problem(path: Path) -> str | None:
    try:
        with gzip.open(path, "rb") as stream:
            while stream.read(1 << 24):
                pass
    except EOFError:
        return "the compressed stream ends early"
    except (gzip.BadGzipFile, zlib.error, OSError) as error:
        return f"corrupt compressed data ({error})"
    return None


def _zip_problem(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            archive.infolist()  # needs the central directory, the last thing written
    except (zipfile.BadZipFile, OSError) as error:
        return f"not a complete archive ({error})"
    return None


def readback_problem(path: Path, name: str, empty_ok: bool = False) -> str | None:
    """Why the file at `path`, written as `name`, does not read back as its type; None when it
    does. Checked by the name's ending: gzip streams to their end marker and checksum, torch's
    zip archives to their central directory, JSON parsed, PNG to its end chunk; anything else
    must not be empty (unless `empty_ok`)."""
    size = path.stat().st_size
    if size == 0:
        return None if empty_ok else "nothing was written (0 bytes)"
    lower = name.lower()
    if lower.endswith(".gz"):
        return _gzip_problem(path)
    if lower.endswith((".pth", ".pt")) and zipfile.is_zipfile(path):
        return _zip_problem(path)
    if lower.endswith(".json"):
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError) as error:
            return f"not readable JSON ({error})"
    if lower.endswith(".png"):
        with open(path, "rb") as stream:
            stream.seek(max(0, size - len(_PNG_END)))
            if stream.read() != _PNG_END:
                return "the PNG image ends early"
    return None


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # where a disk-full error may first show (network and copy-on-write file systems)
    finally:
        os.close(fd)


def _sync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)  # the rename itself
    except OSError:
        pass  # some file systems cannot sync folders; the file itself is synced
    finally:
        os.close(fd)


def commit(tmp: Path, path: Path, check: Callable[[Path], str | None] | None = None, empty_ok: bool = False) -> Path:
    """Flush `tmp` to the disk, check it (`readback_problem` by `path`'s name, then `check`, which
    returns a problem or None) and rename it over `path`. On any failure `tmp` is removed and
    WriteError names `path`."""
    try:
        _sync(tmp)
        problem = readback_problem(tmp, path.name, empty_ok) or (check(tmp) if check else None)
        if problem:
            full = " (the file system is full)" if _full(path.parent) else ""
            raise WriteError(path, f"the written file does not read back: {problem}{full}")
        # mkstemp makes owner-only files; give the result the permissions of a normal new file.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as error:
        raise WriteError(path, describe(error, path)) from None
    finally:
        tmp.unlink(missing_ok=True)
    _sync_folder(path.parent)
    return path


def atomic_write(
    path: str | Path, write: Callable[[str], object], check: Callable[[Path], str | None] | None = None,
    ending: str = "", empty_ok: bool = False,
) -> Path:
    """Call `write(tmp_path)` on a temporary file beside `path`, then `commit` it over `path`.

    A write that raises OSError, or RuntimeError (how SimpleITK, torch and ONNX report a failed
    write), becomes a WriteError naming `path`; other exceptions (bugs) pass unchanged. Either
    way no temporary file is left."""
    path = Path(path)
    tmp = temporary_beside(path, ending)
    try:
        write(str(tmp))
    except (OSError, RuntimeError) as error:
        tmp.unlink(missing_ok=True)
        raise WriteError(path, describe(error, path)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return commit(tmp, path, check, empty_ok)


def text_check(text: str) -> Callable[[Path], str | None]:
    """A `commit` check: the file holds `text` in UTF-8, byte for byte."""

    def check(tmp: Path) -> str | None:
        return None if tmp.read_bytes() == text.encode("utf-8") else "it differs from the text meant"

    return check


def atomic_write_text(path: str | Path, text: str) -> Path:
    """`text` as UTF-8, read back and compared before the rename (an empty text is allowed)."""
    def write(tmp: str) -> None:
        Path(tmp).write_bytes(text.encode("utf-8"))

    return atomic_write(path, write, text_check(text), empty_ok=not text)


def atomic_write_json(path: str | Path, data: Any) -> Path:
    """`data` as JSON indented by 4, as nnU-Net writes its plans."""
    return atomic_write_text(path, json.dumps(data, indent=4))


def atomic_write_texts(folder: Path, files: Mapping[str, str]) -> list[Path]:
    """Several text files, all or none: each is written and checked under a temporary name, and
    only when all are complete are they renamed into place (one after the other)."""
    staged: list[tuple[Path, Path]] = []
    try:
        for name, text in files.items():
            final = folder / name
            tmp = temporary_beside(final)
            staged.append((tmp, final))
            try:
                tmp.write_bytes(text.encode("utf-8"))
                _sync(tmp)
            except OSError as error:
                raise WriteError(final, describe(error, final)) from None
            if tmp.read_bytes() != text.encode("utf-8"):
                raise WriteError(final, "the written file does not read back: it differs from the text meant")
        return [commit(tmp, final, empty_ok=not files[final.name]) for tmp, final in staged]
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)


def reserve_space(tmp: Path, final: Path) -> None:
    """Allocate the disk blocks of `tmp`, a file of its final size to be filled through a memory
    map: a memory map that finds the disk full kills the process (SIGBUS) instead of raising.
    WriteError naming `final` when there is no room."""
    if not hasattr(os, "posix_fallocate"):  # not on macOS: its file systems allocate on write
        return
    fd = os.open(tmp, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.EOPNOTSUPP):  # a file system without it
            raise WriteError(final, describe(error, final)) from None
    finally:
        os.close(fd)

