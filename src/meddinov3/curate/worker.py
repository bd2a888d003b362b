"""Curate one source into one shard; runs inside a worker process.

Every expected failure (unreadable file, not a volume, not CT) becomes a recorded skip with its
reason; only a crash of the process itself escapes, and the runner handles that.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator


from meddinov3.curate.config import CurateConfig
from meddinov3.curate.reading import UnreadableSource, Volume, read_volume
from meddinov3.curate.screening import reject_reason
from meddinov3.curate.shards import ShardStore
from meddinov3.curate.slices import SliceGeometry, write_slices
from meddinov3.curate.sources import Source


@dataclass(frozen=True)
class Outcome:
    source: str
    status: str  # "curated" | "reused" | "skipped" (recorded) | "failed" (retried next run)
    n_slices: int = 0
    reason: str = ""


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


def curate_volume(source: Source, store: ShardStore, volume: Volume) -> Outcome:
    config = store.config
    tmp, out = store.open_partial_shard(source, volume.voxels.shape[0])
    in_plane = None if volume.spacing_xyz is None else volume.spacing_xyz[:2]
    geometry = write_slices(
        volume.voxels, in_plane, out, config.spacing_mm, config.size, config.pad_value,
        config.chunk_slices,
    )
    hu_range = (int(out.min()), int(out.max())) if out.size else (0, 0)
    record = shard_record(source, store, volume, geometry, hu_range)
    store.commit(source, tmp, out, record)
    return Outcome(source.uid, "curated", record["n_slices"])


def curate_source(source: Source, store: ShardStore, retry_skipped: bool = False) -> Outcome:
    record = store.finished_record(source)
    if record is not None:
        return Outcome(source.uid, "reused", record["n_slices"])
    reason = None if retry_skipped else store.cached_skip(source)
    if reason is None:
        try:
            volume = read_volume(source, store.config.size)
            reason = reject_reason(volume, store.config.check_ct)
        except UnreadableSource as error:
            reason = str(error)
        if reason is None:
            return curate_volume(source, store, volume)
        store.record_skip(source, reason)
    return Outcome(source.uid, "skipped", reason=reason)


def curate_in_worker(
    source: Source, root: str, config: CurateConfig, retry_skipped: bool
) -> Outcome:
    """Process-pool entry point (module-level so it pickles)."""
    with single_threaded():
        return curate_source(source, ShardStore(root, config), retry_skipped)
