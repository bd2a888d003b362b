"""Progress bars for the probe's long steps (reading labels, features, head training, scoring)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def progress_bars(show: bool) -> Progress:
    """A rich Progress on stderr, gone when done; with show=False every call is a no-op."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    return Progress(*columns, console=Console(stderr=True), transient=True, disable=not show)
