"""On-disk layout of a corpus, atomic shard commits, resume checks and the merged manifest.

    CORPUS/
      corpus.json               geometry (spacing, size, pad value, format version)
      manifest.jsonl            one line per volume, sorted by source: the corpus index
      skipped.jsonl             sources not curated, with the reason (and the benchmark case matched)
      exclusions/<dataset>.json fingerprints of the benchmark cases left out (`--exclude`)
      shards/ab/<key>.npy       (N, size, size) int16 HU, one per source volume
      shards/ab/<key>.json      that shard's record: its commit marker
      shards/ab/<key>.skip.json a skipped source's reason (so reruns do not re-read it)

A shard counts as done only when its .json exists, names the same source fingerprint and
geometry, and the .npy header has the recorded shape. Both files are written to a temporary
name, flushed, fsynced, read back and renamed (.npy first, then .json; see
`meddinov3.io.commit`), so a killed run leaves at worst a temporary file, which the next run
deletes; never a torn or half-indexed shard. A shard's disk blocks are allocated before its
memory map is filled: on a full disk that raises `WriteError` (the run stops with one line naming
the file) instead of killing the worker with SIGBUS.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from meddinov3.curate.config import CurateConfig
from meddinov3.curate.sources import Source
from meddinov3.errors import InputError
from meddinov3.io import WriteError, commit, describe, reserve_space, text_check

PARTIAL_MARK = ".partial-"
CORPUS_FILE = "corpus.json"
MANIFEST_FILE = "manifest.jsonl"
SKIPPED_FILE = "skipped.jsonl"
LOCK_FILE = ".curate.lock"


class CorpusError(InputError):
    """The corpus folder cannot be used as asked (other geometry, another run writing it)."""


def partial_path(final: Path) -> Path:
    return final.with_name(f"{final.name}{PARTIAL_MARK}{os.getpid()}")


def write_text_atomically(path: Path, text: str) -> None:
    tmp = partial_path(path)
    try:
        tmp.write_bytes(text.encode("utf-8"))
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise WriteError(path, describe(error, path)) from None
    commit(tmp, path, text_check(text), empty_ok=not text)


def write_text_if_changed(path: Path, text: str) -> bool:
    """Keeps an identical file untouched (mtime included), so an idempotent rerun changes nothing."""
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    write_text_atomically(path, text)
    return True


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def npy_shape(path: Path) -> tuple[int, ...] | None:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return None
    return tuple(array.shape) if array.dtype == np.int16 else None


class ShardStore:
    def __init__(self, root: str | os.PathLike, config: CurateConfig):
        self.root = Path(root)
        self.config = config

    # Layout ---------------------------------------------------------------------------------
    def shard_dir(self, source: Source) -> Path:
        return self.root / "shards" / source.key[:2]

    def npy_path(self, source: Source) -> Path:
        return self.shard_dir(source) / f"{source.key}.npy"

    def record_path(self, source: Source) -> Path:
        return self.shard_dir(source) / f"{source.key}.json"

    def skip_path(self, source: Source) -> Path:
        return self.shard_dir(source) / f"{source.key}.skip.json"

    # Run setup ------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Create or check the corpus folder and delete temporaries left by a killed run."""
        (self.root / "shards").mkdir(parents=True, exist_ok=True)
        self.check_geometry()
        for leftover in self.root.rglob(f"*{PARTIAL_MARK}*"):
            leftover.unlink(missing_ok=True)

    def check_geometry(self) -> None:
        path = self.root / CORPUS_FILE
        wanted = self.config.geometry()
        stored = read_json(path)
        if stored is None and path.exists():
            raise CorpusError(f"{path}: unreadable corpus description; fix or remove it")
        if stored is None:
            write_text_atomically(path, json.dumps(wanted, indent=2) + "\n")
        elif stored != wanted:
            raise CorpusError(
                f"{self.root} was built with geometry {stored}, this run asks for {wanted}; "
                "use another output folder"
            )

    def lock(self):
        """Exclusive lock for the duration of a run: two writers would race on the manifest."""
        self.root.mkdir(parents=True, exist_ok=True)
        handle = open(self.root / LOCK_FILE, "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            handle.close()
            raise CorpusError(f"another curate run is writing {self.root}") from error
        return handle

    # Per-source state -----------------------------------------------------------------------
    def finished_record(self, source: Source) -> dict[str, Any] | None:
        record = read_json(self.record_path(source))
        if record is None:
            return None
        expected_shape = (record.get("n_slices"), self.config.size, self.config.size)
        if (
            record.get("source") != source.uid
            or record.get("fingerprint") != source.fingerprint()
            or record.get("geometry") != self.config.geometry()
            or npy_shape(self.npy_path(source)) != expected_shape
        ):
            return None
        return record

    def cached_skip(self, source: Source) -> dict[str, Any] | None:
        """An earlier run's skip record of the unchanged source (reason, and match if it was excluded)."""
        skip = read_json(self.skip_path(source))
        if skip is None or skip.get("fingerprint") != source.fingerprint():
            return None
        if skip.get("check_ct") != self.config.check_ct:  # the verdict may change
            return None
        return skip

    def open_partial_shard(self, source: Source, n_slices: int) -> tuple[Path, np.memmap]:
        final = self.npy_path(source)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = partial_path(final)
        shape = (n_slices, self.config.size, self.config.size)
        try:
            array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.int16, shape=shape)
            reserve_space(tmp, final)
        except (OSError, WriteError) as error:
            tmp.unlink(missing_ok=True)
            raise error if isinstance(error, WriteError) else WriteError(final, describe(error, final)) from None
        return tmp, array

    def commit(self, source: Source, tmp: Path, array: np.memmap, record: dict[str, Any]) -> None:
        shape = array.shape
        array.flush()
        del array
        final = self.npy_path(source)
        commit(tmp, final, lambda t: None if npy_shape(t) == shape else f"not an int16 array of shape {shape}")
        write_text_atomically(self.record_path(source), json.dumps(record) + "\n")
        self.skip_path(source).unlink(missing_ok=True)

    def record_skip(self, source: Source, reason: str, **details: Any) -> None:
        """`details`: what else the verdict rests on (an excluded source's digests and match)."""
        self.shard_dir(source).mkdir(parents=True, exist_ok=True)
        skip = {"source": source.uid, "reason": reason, "fingerprint": source.fingerprint(),
                "check_ct": self.config.check_ct, **details}
        write_text_atomically(self.skip_path(source), json.dumps(skip) + "\n")
        # A source that changed and now fails must not keep serving its old slices.
        self.record_path(source).unlink(missing_ok=True)
        self.npy_path(source).unlink(missing_ok=True)

    def drop_committed(self, record: dict[str, Any], reason: str, **details: Any) -> None:
        """Turn a committed shard of any earlier run into a recorded skip, from its record alone
        (its source may be gone); a rerun on the unchanged source finds the skip."""
        npy = self.root / record["shard"]
        skip = {"source": record["source"], "reason": reason, "fingerprint": record["fingerprint"],
                "check_ct": self.config.check_ct, **details}
        write_text_atomically(npy.with_suffix(".skip.json"), json.dumps(skip) + "\n")
        npy.with_suffix(".json").unlink(missing_ok=True)
        npy.unlink(missing_ok=True)

    # Corpus index ---------------------------------------------------------------------------
    def committed_records(self) -> Iterator[dict[str, Any]]:
        for path in self.root.glob("shards/*/*.json"):
            if path.name.endswith(".skip.json"):
                continue
            record = read_json(path)
            shape = npy_shape(path.with_suffix(".npy"))
            if record is not None and shape == (record["n_slices"], *[self.config.size] * 2):
                yield record

    def write_index(self) -> tuple[int, int]:
        """Merge all committed shards into manifest.jsonl and all skips into skipped.jsonl.

        Every committed shard in the folder is indexed, so runs over different inputs add up
        to one corpus. Returns (volumes, slices).
        """
        records = sorted(self.committed_records(), key=lambda r: r["source"])
        write_text_if_changed(
            self.root / MANIFEST_FILE, "".join(json.dumps(r) + "\n" for r in records)
        )
        skips = [read_json(p) for p in self.root.glob("shards/*/*.skip.json")]
        lines = sorted(
            json.dumps({"source": s["source"], "reason": s["reason"], **s.get("match", {})}) + "\n"
            for s in skips if s
        )
        write_text_if_changed(self.root / SKIPPED_FILE, "".join(lines))
        return len(records), sum(r["n_slices"] for r in records)
