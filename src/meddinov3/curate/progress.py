"""Terminal side of a curation run: rich progress bar while working, summary table after."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from meddinov3.curate.benchmarks import EXCLUSIONS_FOLDER
from meddinov3.curate.config import CurateConfig
from meddinov3.curate.exclusion import prepare_exclusions
from meddinov3.curate.runner import CurationSummary, curate
from meddinov3.curate.shards import MANIFEST_FILE, SKIPPED_FILE, ShardStore
from meddinov3.curate.sources import discover
from meddinov3.curate.worker import Outcome
from meddinov3.io import WriteError

SHOWN_PROBLEMS = 20


def summary_table(summary: CurationSummary, out: str) -> Table:
    table = Table(title=f"curated corpus {out}")
    table.add_column("")
    table.add_column("volumes", justify="right")
    table.add_column("slices", justify="right")
    for status in ("curated", "reused", "excluded", "skipped", "failed"):
        table.add_row(status, str(summary.count(status)), str(summary.slices(status)))
    table.add_row("corpus total", str(summary.corpus_volumes), str(summary.corpus_slices))
    rate = summary.slices("curated") / max(summary.seconds, 1e-9)
    table.caption = f"{summary.seconds:.1f} s, {rate:.1f} new slices/s"
    return table


def print_problems(console: Console, summary: CurationSummary, out: str) -> None:
    notes = [o for o in summary.outcomes if o.note]
    for outcome in notes[:SHOWN_PROBLEMS]:
        console.print(f"[yellow]note[/] {escape(outcome.source)}: {escape(outcome.note)}", soft_wrap=True)
    if len(notes) > SHOWN_PROBLEMS:
        console.print(f"... {len(notes) - SHOWN_PROBLEMS} more notes (\"clipped\" in {out}/{MANIFEST_FILE})")
    problems = summary.problems()
    for outcome in problems[:SHOWN_PROBLEMS]:
        console.print(f"[yellow]{outcome.status}[/] {escape(outcome.source)}: {escape(outcome.reason)}", soft_wrap=True)
    if len(problems) > SHOWN_PROBLEMS:
        console.print(f"... {len(problems) - SHOWN_PROBLEMS} more")
    excluded = summary.count("excluded")
    if excluded:
        console.print(
            f"{excluded} source(s) left out as benchmark cases (dataset and case in {out}/{SKIPPED_FILE})",
            soft_wrap=True,
        )
    if problems:
        console.print(f"skipped sources are listed in {out}/{SKIPPED_FILE}; failed ones are "
                      "retried by the next run")


def warn_about_dropped_exclusions(console: Console, out: str, config: CurateConfig) -> None:
    """Exclusion applies to the run that asks for it: say so when an earlier run excluded more."""
    earlier = {path.stem for path in (Path(out) / EXCLUSIONS_FOLDER).glob("*.json")}
    dropped = sorted(earlier - {Path(folder).name for folder in config.exclude})
    if dropped:
        console.print(
            f"[yellow]note[/]: an earlier run kept {out} clear of {', '.join(dropped)}; this one does not"
            " exclude it, so its cases among these sources are curated (pass --exclude again to keep them out)",
            soft_wrap=True,
        )


def run_with_progress(
    inputs: list[str], out: str, config: CurateConfig, workers: int, retry_skipped: bool
) -> CurationSummary:
    console = Console(stderr=True)
    with console.status("finding volumes..."):
        sources = discover(inputs)
    if config.exclude:
        with console.status("fingerprinting the benchmark cases to exclude..."):
            prepare_exclusions(out, config.exclude, workers)
    warn_about_dropped_exclusions(console, out, config)
    columns = (
        TextColumn("[bold]curate"), BarColumn(), MofNCompleteColumn(),
        TextColumn("volumes | {task.fields[slices]} slices | {task.fields[skipped]} skipped"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("curate", total=len(sources), slices=0, skipped=0)
        counts = {"slices": 0, "skipped": 0}

        def advance(outcome: Outcome) -> None:
            counts["slices"] += outcome.n_slices
            counts["skipped"] += outcome.status in ("skipped", "excluded", "failed")
            bar.update(task, advance=1, **counts)

        try:
            summary = curate(sources, ShardStore(out, config), workers, retry_skipped, advance)
        except WriteError:
            bar.remove_task(task)  # the error line alone says what happened
            raise
    print_problems(console, summary, out)
    Console().print(summary_table(summary, out))
    return summary
