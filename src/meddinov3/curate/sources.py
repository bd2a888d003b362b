"""Find the volumes to curate: image files, DICOM series in folders, pre-curated .npy slices.

A :class:`Source` is one unit of work and of resumption: it becomes exactly one shard. Its
``uid`` is stable across runs (absolute path, plus the SeriesInstanceUID for DICOM), and its
``fingerprint`` changes when the files change, so a modified source is curated again.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal

SourceKind = Literal["image", "dicom", "npy"]

# Volume formats SimpleITK reads with their geometry; NIfTI is the common case.
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr")
NPY_SUFFIX = ".npy"
DICOM_MAGIC_OFFSET = 128
DICOM_MAGIC = b"DICM"
CORPUS_MARKER = "corpus.json"


@dataclass(frozen=True)
class Source:
    kind: SourceKind
    path: str
    series_uid: str = ""
    files: tuple[str, ...] = field(default=(), repr=False)
    # Files of the folder GDCM left out of this series ("<name>: <reason>"): the series is skipped.
    unreadable: tuple[str, ...] = field(default=(), repr=False)

    @property
    def uid(self) -> str:
        return f"{self.path}#{self.series_uid}" if self.series_uid else self.path

    @property
    def key(self) -> str:
        """File-name-safe stable id of the source; names its shard. A name that is not UTF-8 keeps
        its bytes (Python holds them as lone surrogates)."""
        return hashlib.sha1(self.uid.encode("utf-8", "surrogateescape")).hexdigest()[:20]

    def fingerprint(self) -> list[int]:
        """(file count, total bytes, newest mtime in ns): changes when the source changes."""
        paths = self.files or (self.path,)
        stats = [os.stat(p) for p in paths]
        return [len(stats), sum(s.st_size for s in stats), max(s.st_mtime_ns for s in stats)]


def image_suffix(path: Path) -> str | None:
    name = path.name.lower()
    for suffix in (*IMAGE_SUFFIXES, NPY_SUFFIX):
        if name.endswith(suffix):
            return suffix
    return None


def has_dicom_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            handle.seek(DICOM_MAGIC_OFFSET)
            return handle.read(4) == DICOM_MAGIC
    except OSError:
        return False


def dicom_series_in(folder: Path) -> list[Source]:
    """Every DICOM series directly inside ``folder`` (GDCM groups files by SeriesInstanceUID)."""
    from meddinov3.images.dicom import find_dicom_series

    return [
        Source("dicom", str(folder), series.uid, series.files, series.unreadable)
        for series in find_dicom_series(folder)
    ]


def file_source(path: Path) -> Source | None:
    suffix = image_suffix(path)
    if suffix is None:
        return None
    return Source("npy" if suffix == NPY_SUFFIX else "image", str(path))


def folder_looks_like_dicom(files: list[Path]) -> bool:
    # Checking a few candidates is enough: a series folder is homogeneous, and GDCM does the
    # real parsing only where this cheap test passes.
    candidates = [f for f in files if image_suffix(f) is None and not f.name.startswith(".")]
    return any(has_dicom_preamble(f) for f in candidates[:8])


def is_corpus(folder: Path) -> bool:
    # A curated corpus holds (N, 256, 256) .npy shards that would pass as pre-curated input:
    # never walk into one, or a corpus inside its own input folder would swallow itself.
    return (folder / CORPUS_MARKER).is_file() and (folder / "shards").is_dir()


def sources_in_folder(root: Path) -> list[Source]:
    sources: list[Source] = []
    for folder, subfolders, names in os.walk(root):
        if is_corpus(Path(folder)):
            subfolders.clear()
            continue
        subfolders.sort()
        files = [Path(folder) / name for name in sorted(names)]
        sources.extend(s for s in map(file_source, files) if s is not None)
        if folder_looks_like_dicom(files):
            sources.extend(dicom_series_in(Path(folder)))
    return sources


def discover(inputs: Iterable[str | os.PathLike]) -> list[Source]:
    """All sources under ``inputs`` (files or folders, searched recursively), sorted by uid.

    A named input that does not exist raises FileNotFoundError: that is a typo, not data to
    skip. A named file of an unknown type is returned as an "image" source so that the read
    fails and the file is reported as skipped, with the reason.
    """
    found: dict[str, Source] = {}
    for raw in inputs:
        path = Path(raw).expanduser().resolve()
        if not path.exists():
            raise FileNotFoundError(f"curate input does not exist: {raw}")
        if path.is_dir():
            batch = sources_in_folder(path)
        else:
            batch = [file_source(path) or Source("image", str(path))]
        found.update((s.uid, s) for s in batch)
    return [found[uid] for uid in sorted(found)]
