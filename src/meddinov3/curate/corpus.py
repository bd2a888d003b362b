"""Read a curated corpus: the slice-level API the pretraining data loader uses.

    from meddinov3.curate import SliceCorpus
    corpus = SliceCorpus("ct3m/")
    len(corpus)                  # number of axial slices
    hu = corpus[i]               # np.ndarray int16 (256, 256), Hounsfield units
    record, k = corpus.locate(i) # the volume it comes from and its slice index in that volume
    record.spacing_mm            # (x, y) mm of a stored pixel; None for pre-curated inputs
    corpus.records               # one VolumeRecord per volume, in manifest order

Images are laid out like a radiological display: row 0 anterior, column 0 patient right.
Shards are memory-mapped on first use, so the corpus costs no RAM up front and pickles cheaply
into DataLoader worker processes (open maps are not pickled; each worker reopens its own).
"""

from __future__ import annotations

import bisect
import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from meddinov3.curate.shards import CORPUS_FILE, MANIFEST_FILE

OPEN_SHARDS = 256  # memory maps kept open; bounded to stay far below the OS map-count limit


@dataclass(frozen=True)
class VolumeRecord:
    source: str
    shard: str
    n_slices: int
    spacing_mm: tuple[float, float] | None
    z_mm: tuple[float, ...] | None
    raw: dict[str, Any]  # the full manifest line (source spacing, shape, modality, ...)

    @classmethod
    def from_manifest_line(cls, line: dict[str, Any]) -> "VolumeRecord":
        spacing = line.get("spacing_mm")
        z_mm = line.get("z_mm")
        return cls(
            source=line["source"],
            shard=line["shard"],
            n_slices=int(line["n_slices"]),
            spacing_mm=tuple(spacing) if spacing else None,
            z_mm=tuple(z_mm) if z_mm else None,
            raw=line,
        )


class SliceCorpus:
    """Random access to every slice of a curated corpus folder."""

    def __init__(self, path: str | Path):
        self.root = Path(path)
        manifest = self.root / MANIFEST_FILE
        if not manifest.is_file():
            raise FileNotFoundError(
                f"{manifest} not found: {self.root} is not a curated corpus "
                "(create one with `meddinov3 curate`)"
            )
        geometry = json.loads((self.root / CORPUS_FILE).read_text(encoding="utf-8"))
        self.size: int = int(geometry["size"])
        self.geometry: dict[str, Any] = geometry
        self.records: list[VolumeRecord] = [
            VolumeRecord.from_manifest_line(json.loads(line))
            for line in manifest.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
        self.offsets: list[int] = np.cumsum([0] + [r.n_slices for r in self.records]).tolist()
        self._maps: OrderedDict[int, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return self.offsets[-1]

    def _position(self, index: int) -> tuple[int, int]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"slice {index} out of range for a corpus of {len(self)} slices")
        volume = bisect.bisect_right(self.offsets, index) - 1
        return volume, index - self.offsets[volume]

    def locate(self, index: int) -> tuple[VolumeRecord, int]:
        """(volume record, slice index inside that volume) of corpus slice ``index``."""
        volume, k = self._position(index)
        return self.records[volume], k

    def __getitem__(self, index: int) -> np.ndarray:
        volume, k = self._position(index)
        # A copy: writable, and independent of the memory map (torch.from_numpy warns on
        # read-only arrays).
        return np.array(self._shard(volume)[k])

    def _shard(self, volume: int) -> np.ndarray:
        shard = self._maps.pop(volume, None)
        if shard is None:
            shard = np.load(self.root / self.records[volume].shard, mmap_mode="r")
            if len(self._maps) >= OPEN_SHARDS:
                self._maps.popitem(last=False)
        self._maps[volume] = shard
        return shard

    def volume(self, volume: int) -> np.ndarray:
        """All slices of one volume, (n_slices, size, size) int16 (memory-mapped)."""
        return self._shard(volume)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_maps"] = OrderedDict()
        return state
