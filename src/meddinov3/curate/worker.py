"""Curate one source into one shard; runs inside a worker process.

Every expected failure (unreadable file, not a volume, not CT) becomes a recorded skip with its
reason, and so does a benchmark case of an excluded dataset (with the case it matches); only a
crash of the process itself escapes, and the runner handles that.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator


from meddinov3.curate.config import CurateConfig
from meddinov3.curate.exclusion import ExclusionIndex, Match, stored_index
from meddinov3.curate.fingerprint import slice_digests
from meddinov3.curate.reading import UnreadableSource, Volume, read_volume
from meddinov3.curate.screening import reject_reason
from meddinov3.curate.shards import ShardStore
from meddinov3.curate.slices import SliceGeometry, write_slices
from meddinov3.curate.sources import Source

DIGESTS = "voxel_digests"  # per-slice content fingerprints in a shard record (see fingerprint.py)


@dataclass(frozen=True)
class Outcome:
    source: str
    # "curated" | "reused" | "skipped" (recorded) | "excluded" (a benchmark case, recorded as skipped)
    # | "failed" (retried next run)
    status: str
    n_slices: int = 0
    reason: str = ""
    note: str = ""  # what a curated source should be told about (values clipped to int16)


@contextmanager
def single_threaded() -> Iterator[None]:
    """One thread per worker: parallelism comes from processes, and oversubscribing the cores
    with ITK and torch threads on top only slows every worker down. Restores the settings."""
    import SimpleITK as sitk
    import torch

    itk_threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    torch_threads = torch.get_num_threads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(itk_threads)
        torch.set_num_threads(torch_threads)


def rounded(values, digits: int = 6) -> list[float] | None:
    return None if values is None else [round(float(v), digits) for v in values]


def shard_record(
    source: Source,
    store: ShardStore,
    volume: Volume,
    geometry: SliceGeometry | None,
    hu_range: tuple[int, int],
) -> dict[str, Any]:
    n_slices = volume.voxels.shape[0]
    output_spacing = geometry.output_spacing if geometry else None
    return {
        "source": source.uid,
        "kind": source.kind,
        "path": source.path,
        "series_uid": source.series_uid,
        "shard": store.npy_path(source).relative_to(store.root).as_posix(),
        "n_slices": n_slices,
        "spacing_mm": rounded(output_spacing),
        "z_mm": volume.z_mm,
        "source_spacing_mm": rounded(volume.spacing_xyz),
        "source_shape_zyx": list(volume.voxels.shape),
        "resampled_spacing_mm": rounded(geometry.resampled_spacing) if geometry else None,
        "pad_rows": list(geometry.pad_rows) if geometry else None,
        "pad_cols": list(geometry.pad_cols) if geometry else None,
        "modality": volume.modality or None,
        "hu_range": list(hu_range),
        "fingerprint": source.fingerprint(),
        "geometry": store.config.geometry(),
        **volume.notes,
    }


def curate_volume(source: Source, store: ShardStore, volume: Volume, digests: list[str | None]) -> Outcome:
    config = store.config
    tmp, out = store.open_partial_shard(source, volume.voxels.shape[0])
    in_plane = None if volume.spacing_xyz is None else volume.spacing_xyz[:2]
    geometry, clipping = write_slices(
        volume.voxels, in_plane, out, config.spacing_mm, config.size, config.pad_value,
        config.chunk_slices,
    )
    hu_range = (int(out.min()), int(out.max())) if out.size else (0, 0)
    record = shard_record(source, store, volume, geometry, hu_range)
    record["clipped"] = clipping.record()
    record[DIGESTS] = digests  # what `curate --check` compares with benchmark cases later
    store.commit(source, tmp, out, record)
    return Outcome(source.uid, "curated", record["n_slices"], note=clipping.describe() if clipping.voxels else "")


def skip(source: Source, store: ShardStore, reason: str) -> Outcome:
    store.record_skip(source, reason)
    return Outcome(source.uid, "skipped", reason=reason)


def exclude(source: Source, store: ShardStore, digests: list[str | None], match: Match) -> Outcome:
    """Leave out a benchmark case (its shard too, if an earlier run curated it) and say which it is."""
    store.record_skip(source, match.reason(), digests=digests, match=match.to_dict())
    return Outcome(source.uid, "excluded", reason=match.reason())


def earlier_verdict(
    source: Source, store: ShardStore, index: ExclusionIndex | None, retry_skipped: bool
) -> Outcome | None:
    """What an earlier run decided about the unchanged source, checked against today's exclusions;
    None when the source must be read."""
    record = store.finished_record(source)
    if record is not None and (index is None or DIGESTS in record):
        match = index.match(record[DIGESTS]) if index is not None else None
        if match is None:
            return Outcome(source.uid, "reused", record["n_slices"])
        return exclude(source, store, record[DIGESTS], match)
    earlier = None if retry_skipped else store.cached_skip(source)
    if earlier is None:
        return None
    if "digests" not in earlier:  # skipped for what it is (unreadable, not CT), not as a benchmark case
        return Outcome(source.uid, "skipped", reason=earlier["reason"])
    match = index.match(earlier["digests"]) if index is not None else None
    if match is None:
        return None  # no longer excluded: curate it
    if match.to_dict() != earlier.get("match"):
        return exclude(source, store, earlier["digests"], match)
    return Outcome(source.uid, "excluded", reason=match.reason())


def curate_source(source: Source, store: ShardStore, retry_skipped: bool = False) -> Outcome:
    index = stored_index(store.root, store.config.exclude)
    earlier = earlier_verdict(source, store, index, retry_skipped)
    if earlier is not None:
        return earlier
    try:
        volume = read_volume(source, store.config.size)
    except UnreadableSource as error:
        return skip(source, store, str(error))
    reason = reject_reason(volume, store.config.check_ct)
    if reason is not None:
        return skip(source, store, reason)
    digests = slice_digests(volume.voxels)
    match = index.match(digests) if index is not None else None
    if match is not None:
        return exclude(source, store, digests, match)
    return curate_volume(source, store, volume, digests)


def curate_in_worker(
    source: Source, root: str, config: CurateConfig, retry_skipped: bool
) -> Outcome:
    """Process-pool entry point (module-level so it pickles)."""
    with single_threaded():
        return curate_source(source, ShardStore(root, config), retry_skipped)
