"""Run the curation of many sources: worker processes, progress, crash isolation, final index.

Workers are separate processes (spawned, one thread each). At most two tasks per worker are in
flight, so when a worker process dies (a reader segfault, the OOM killer) only those few
sources are suspects; each is then retried alone, and one that kills its process again is
recorded as skipped. The rest of the run goes on. A shard that cannot be written (a full disk:
`WriteError`) stops the whole run instead, naming the file: every source after it would fail the
same way.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Callable, Iterable

from meddinov3.curate.config import CurateConfig
from meddinov3.curate.exclusion import prepare_exclusions, stored_index
from meddinov3.curate.shards import ShardStore
from meddinov3.curate.sources import Source, discover
from meddinov3.curate.worker import DIGESTS, Outcome, curate_in_worker, curate_source, single_threaded
from meddinov3.io import WriteError

TASKS_PER_WORKER = 2


@dataclass
class CurationSummary:
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0
    corpus_volumes: int = 0
    corpus_slices: int = 0

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    def slices(self, status: str) -> int:
        return sum(o.n_slices for o in self.outcomes if o.status == status)

    def problems(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status in ("skipped", "failed")]


def failure(source: Source, error: BaseException) -> Outcome:
    return Outcome(source.uid, "failed", reason=f"{type(error).__name__}: {error}")


def run_inline(
    sources: Iterable[Source], store: ShardStore, retry_skipped: bool, report: Callable
) -> None:
    with single_threaded():
        for source in sources:
            try:
                report(curate_source(source, store, retry_skipped))
            except WriteError:
                raise
            except Exception as error:  # noqa: BLE001 - one bad source must not end the run
                report(failure(source, error))


def run_isolated(source: Source, store: ShardStore, retry_skipped: bool) -> Outcome:
    """Retry a crash suspect in a pool of its own; a second crash convicts it."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        future = pool.submit(curate_in_worker, source, str(store.root), store.config, retry_skipped)
        try:
            return future.result()
        except BrokenProcessPool:
            reason = "reading it crashed the worker process (corrupt file or out of memory)"
            store.record_skip(source, reason)
            return Outcome(source.uid, "skipped", reason=reason)
        except WriteError:
            raise
        except Exception as error:  # noqa: BLE001
            return failure(source, error)


def run_pool_until_crash(
    pending: deque[Source], store: ShardStore, workers: int, retry_skipped: bool, report: Callable
) -> list[Source]:
    """Work through ``pending``; returns the in-flight sources if the pool broke, else []."""
    context = multiprocessing.get_context("spawn")
    in_flight: dict[Future, Source] = {}
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        while pending or in_flight:
            while pending and len(in_flight) < workers * TASKS_PER_WORKER:
                source = pending.popleft()
                task = (curate_in_worker, source, str(store.root), store.config, retry_skipped)
                in_flight[pool.submit(*task)] = source
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                source = in_flight.pop(future)
                try:
                    report(future.result())
                except BrokenProcessPool:
                    return [source, *in_flight.values()]
                except WriteError:
                    raise
                except Exception as error:  # noqa: BLE001
                    report(failure(source, error))
    return []


def run_pool(
    sources: Iterable[Source], store: ShardStore, workers: int, retry_skipped: bool,
    report: Callable,
) -> None:
    pending = deque(sources)
    while pending:
        for suspect in run_pool_until_crash(pending, store, workers, retry_skipped, report):
            report(run_isolated(suspect, store, retry_skipped))


def exclude_earlier_shards(store: ShardStore, processed: set[str]) -> list[Outcome]:
    """Shards that earlier runs curated from other inputs, checked by their recorded digests against
    this run's exclusions, so that no run with --exclude leaves a benchmark case in the corpus
    (shards curated before digests were recorded are left to `curate --check`)."""
    index = stored_index(store.root, store.config.exclude)
    if index is None:
        return []
    outcomes = []
    for record in list(store.committed_records()):
        if record["source"] in processed or record.get(DIGESTS) is None:
            continue
        match = index.match(record[DIGESTS])
        if match is not None:
            store.drop_committed(record, match.reason(), digests=record[DIGESTS], match=match.to_dict())
            outcomes.append(Outcome(record["source"], "excluded", reason=match.reason()))
    return outcomes


def curate(
    sources: list[Source],
    store: ShardStore,
    workers: int = 1,
    retry_skipped: bool = False,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> CurationSummary:
    """Curate ``sources`` into ``store`` and rewrite the corpus index. Safe to rerun."""
    summary = CurationSummary()

    def report(outcome: Outcome) -> None:
        summary.outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)

    start = time.perf_counter()
    with store.lock():
        store.prepare()
        prepare_exclusions(store.root, store.config.exclude, workers)
        if workers <= 1:
            run_inline(sources, store, retry_skipped, report)
        else:
            run_pool(sources, store, workers, retry_skipped, report)
        for outcome in exclude_earlier_shards(store, {source.uid for source in sources}):
            report(outcome)
        summary.corpus_volumes, summary.corpus_slices = store.write_index()
    summary.seconds = time.perf_counter() - start
    return summary


def curate_paths(
    inputs: Iterable[str], out: str, config: CurateConfig = CurateConfig(), **kwargs
) -> CurationSummary:
    """Convenience entry point: discover sources under ``inputs`` and curate them into ``out``."""
    return curate(discover(inputs), ShardStore(out, config), **kwargs)
