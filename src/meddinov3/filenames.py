"""File names that every library here can open, and that every terminal can print.

Python reads any name a file system holds: bytes that are not valid in its file-system encoding
(UTF-8, also under LC_ALL=C) become lone surrogates. SimpleITK and GDCM take paths as UTF-8
text; given such a name, SimpleITK's wrapper hands ITK a null string and the process aborts
(`std::logic_error`, SIGABRT), and under a non-UTF-8 locale ITK would open other bytes than the
file's. So a name is checked here before any C library sees it, and shown with its odd bytes
escaped (`\\xe9`) in messages.
"""

from __future__ import annotations

import os

RENAME_HINT = "rename it to UTF-8 (e.g. `convmv -f latin1 -t utf-8 --notest NAME`)"


def c_libraries_can_open(path: str | os.PathLike) -> bool:
    """Whether the UTF-8 text a C library receives for `path` is the name's own bytes."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        return False
    try:
        return text.encode("utf-8") == os.fsencode(text)
    except UnicodeEncodeError:  # lone surrogates: bytes that are not UTF-8
        return False


def shown(path: str | os.PathLike) -> str:
    """`path` as printable text: bytes that are not UTF-8 as `\\xNN` escapes."""
    return os.fsencode(os.fspath(path)).decode("utf-8", "backslashreplace")


def name_problem(path: str | os.PathLike) -> str | None:
    """Why SimpleITK cannot be given `path`, or None."""
    if c_libraries_can_open(path):
        return None
    return f"the name is not valid UTF-8 (Latin-1?), which SimpleITK cannot open: {RENAME_HINT}"
