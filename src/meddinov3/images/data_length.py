"""Whether a MetaImage (.mha, .mhd) or NRRD file holds as much voxel data as its header promises.

SimpleITK refuses such a file itself, but for MetaImage with the reason "No such file or
directory" (the errno its reader happens to leave). The headers are plain text, so the promise
is checked here first and a short file is called what it is: truncated.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

METAIMAGE_ENDINGS = (".mha", ".mhd")
NRRD_ENDINGS = (".nrrd", ".nhdr")
_HEADER_LINES = 200
_MET_ITEM_BYTES = {
    "MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
    "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8,
}
_NRRD_ITEM_BYTES = {
    "char": 1, "int8": 1, "uint8": 1, "short": 2, "int16": 2, "uint16": 2, "int": 4, "int32": 4, "uint32": 4,
    "float": 4, "long long": 8, "int64": 8, "uint64": 8, "double": 8,
}
_NRRD_ALIASES = {"uchar": "char", "ushort": "short", "uint": "int", "longlong": "long long", "ulonglong": "long long"}


def _truncated(expected: int, holds: int, what: str, where: str) -> str | None:
    if holds >= expected:
        return None
    return (
        f"truncated: the header describes {expected} bytes of {what}, {where} holds {holds}"
        " (cut off while copying or downloading?)"
    )


def _header(path: Path, separator: str, last: str | None) -> tuple[dict[str, str], int] | None:
    """Header fields (`key<separator>value` lines) up to the line of key `last` (None: up to a blank
    line), and where the data starts; None when the header does not end within bounds."""
    fields: dict[str, str] = {}
    with open(path, "rb") as stream:
        for _ in range(_HEADER_LINES):
            line = stream.readline(4096).decode("latin-1")
            if not line or (last is None and not line.strip()):
                return (fields, stream.tell()) if line else None
            key, _, value = line.partition(separator)
            fields[key.strip().lower()] = value.strip()
            if last is not None and key.strip().lower() == last:
                return fields, stream.tell()
    return None


def _metaimage_problem(path: Path) -> str | None:
    found = _header(path, "=", "elementdatafile")
    if found is None:
        return None  # not a header this check understands: SimpleITK says what is wrong
    fields, start = found
    item = _MET_ITEM_BYTES.get(fields.get("elementtype", "").upper())
    target = fields["elementdatafile"]
    if item is None or fields.get("headersize", "0") != "0" or target.startswith("LIST") or "%" in target:
        return None
    if target.upper() == "LOCAL":
        data, holds, where = path, path.stat().st_size - start, "the file"
    else:
        data = path.parent / target
        if not data.is_file():
            return f"its voxel data file {data.name} is missing"
        holds, where = data.stat().st_size, data.name
    if fields.get("compresseddata", "false").lower() == "true":
        size = int(fields.get("compresseddatasize", "0") or 0)
        return _truncated(size, holds, "compressed voxel data", where) if size else None
    voxels = int(np.prod([int(v) for v in fields.get("dimsize", "0").split()], dtype=np.int64))
    channels = int(fields.get("elementnumberofchannels", "1"))
    return _truncated(voxels * channels * item, holds, "voxel data", where)


def _nrrd_item_bytes(name: str) -> int | None:
    words = [w for w in name.lower().removesuffix("_t").split() if w not in ("signed", "unsigned")]
    if len(words) > 1 and words[-1] == "int":
        words = words[:-1]
    joined = " ".join(words)
    return _NRRD_ITEM_BYTES.get(_NRRD_ALIASES.get(joined, joined))


def _gzip_ends_early(path: Path, offset: int) -> bool:
    with open(path, "rb") as raw:
        raw.seek(offset)
        try:
            with gzip.GzipFile(fileobj=raw) as stream:
                while stream.read(1 << 24):
                    pass
        except (EOFError, zlib.error, OSError):
            return True
    return False


def _nrrd_problem(path: Path) -> str | None:
    found = _header(path, ":", None)
    if found is None:
        return None
    fields, start = found
    item = _nrrd_item_bytes(fields.get("type", ""))
    detached = fields.get("data file") or fields.get("datafile")
    if item is None or "line skip" in fields or "byte skip" in fields or (detached and " " in detached):
        return None
    data = path.parent / detached if detached else path
    if detached and not data.is_file():
        return f"its voxel data file {data.name} is missing"
    offset = 0 if detached else start
    encoding = fields.get("encoding", "")
    if encoding in ("gzip", "gz"):
        return "truncated: the compressed voxel data ends early (cut off while copying or downloading?)" if (
            _gzip_ends_early(data, offset)) else None
    if encoding != "raw":
        return None
    voxels = int(np.prod([int(v) for v in fields.get("sizes", "0").split()], dtype=np.int64))
    return _truncated(voxels * item, data.stat().st_size - offset, "voxel data", data.name if detached else "the file")


def data_length_problem(path: Path) -> str | None:
    """"truncated: ..." when the MetaImage or NRRD file at `path` holds less voxel data than its
    header describes; None otherwise (and for other formats)."""
    name = path.name.lower()
    if name.endswith(METAIMAGE_ENDINGS):
        return _metaimage_problem(path)
    if name.endswith(NRRD_ENDINGS):
        return _nrrd_problem(path)
    return None
