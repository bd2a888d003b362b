"""The demo's terminal: its own progress display, and everything libraries print sent to a log.

nnU-Net prints plans, per-epoch logs and tqdm bars, some of it from worker processes; the demo
shows one progress bar per step instead. Library output is redirected at the file-descriptor
level (`meddinov3.capture`) into OUT/logs/<step>.log, while the demo's rich console writes to a
duplicate of the original terminal descriptor.
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

LOG_TAIL_LINES = 25


def terminal_console() -> tuple[Console, bool]:
    """A console on a duplicate of stdout's descriptor; False when stdout has no descriptor
    (then library output cannot be redirected and stays visible)."""
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return Console(), False
    sys.stdout.flush()
    stream = os.fdopen(os.dup(descriptor), "w", buffering=1, encoding="utf-8", errors="replace")
    return Console(file=stream), True


def log_tail(log: Path, lines: int = LOG_TAIL_LINES) -> str:
    if not log.is_file():
        return ""
    # tqdm redraws with carriage returns; each redraw counts as a line.
    text = log.read_text(encoding="utf-8", errors="replace").replace("\r", "\n")
    return "\n".join([line for line in text.splitlines() if line.strip()][-lines:])


def step_progress(console: Console) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=30),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
    )


@contextmanager
def polled(
    progress: Progress, task: TaskID, poll: Callable[[], tuple[int, str]], interval: float = 0.5
) -> Iterator[None]:
    """Update `task` from `poll()` -> (completed, status) in a background thread while inside.

    For work that reports progress only through the files it writes (nnU-Net preprocessing,
    the pretraining metrics log, prediction outputs).
    """
    stop = threading.Event()

    def update() -> None:
        try:
            completed, status = poll()
        except OSError:  # a file being replaced between listing and reading: next poll
            return
        progress.update(task, completed=completed, status=status)

    def loop() -> None:
        while not stop.wait(interval):
            update()

    thread = threading.Thread(target=loop, name="demo-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        update()
