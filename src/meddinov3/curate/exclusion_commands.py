"""The terminal side of `curate --exclude` and `curate --check`: datasets resolved, overlap printed."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

SHOWN_OVERLAPS = 50


def benchmark_folders(specs: Sequence[str]) -> tuple[str, ...]:
    """Each --exclude as its raw dataset folder (checked now, before any work), each once."""
    from meddinov3.curate.benchmarks import benchmark_folder

    return tuple(dict.fromkeys(str(benchmark_folder(spec)) for spec in specs))


def run_check(corpus: Path, folders: Sequence[str], workers: int) -> bool:
    """Print the corpus's overlap with the datasets; True when a volume is a benchmark case."""
    from rich.console import Console
    from rich.markup import escape

    from meddinov3.curate.check import check_corpus

    errors = Console(stderr=True)
    with errors.status("fingerprinting the benchmark cases..."):
        report = check_corpus(corpus, folders, workers)
    console = Console()
    names = ", ".join(report.datasets)
    # One line per volume, never cut at the terminal's width: paths are what a reader acts on.
    for source, match in report.overlaps[:SHOWN_OVERLAPS]:
        console.print(f"[red]overlap[/] {escape(source)}: {escape(match.reason())}", soft_wrap=True, highlight=False)
    if len(report.overlaps) > SHOWN_OVERLAPS:
        console.print(f"... {len(report.overlaps) - SHOWN_OVERLAPS} more")
    for source, why in report.unchecked:
        console.print(f"[yellow]unchecked[/] {escape(source)}: {escape(why)}", soft_wrap=True)
    console.print(
        f"{len(report.overlaps)} of {report.volumes} volume(s) in {corpus} are cases of {names}"
        + (f"; {len(report.unchecked)} unchecked" if report.unchecked else "")
        + (f"; rerun `meddinov3 curate SOURCES -o {corpus} --exclude ...` to take them out" if report.overlaps else ""),
        soft_wrap=True, highlight=False,
    )
    return bool(report.overlaps)
