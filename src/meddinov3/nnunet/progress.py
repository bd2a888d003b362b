"""Following a training run iteration by iteration (nnU-Net's own hooks are per epoch): a callback
that sees every iteration's loss, and the terminal's progress bar built on it."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator


@dataclass(frozen=True)
class TrainingProgress:
    """Where a run stands: iterations done of all, the epoch running (0-based), and the loss of the
    iteration just done (None in the first report, made before training starts or resumes)."""

    done: int
    total: int
    epoch: int
    loss: float | None = None


ProgressCallback = Callable[[TrainingProgress], None]


@contextmanager
def reporting_iterations(trainer: Any, reports: list[ProgressCallback]) -> Iterator[None]:
    """Inside, each of `reports` is called once before the first iteration and after every one,
    fed by wrapping the trainer's train_step; only the main process reports."""
    if not reports or trainer.local_rank != 0:
        yield
        return
    total = trainer.num_epochs * trainer.num_iterations_per_epoch
    done = trainer.current_epoch * trainer.num_iterations_per_epoch
    original_step = trainer.train_step

    def report(progress: TrainingProgress) -> None:
        for callback in reports:
            callback(progress)

    def train_step(batch: dict) -> dict:
        nonlocal done
        result = original_step(batch)
        done += 1
        report(TrainingProgress(done, total, trainer.current_epoch, float(result["loss"])))
        return result

    report(TrainingProgress(done, total, trainer.current_epoch))
    trainer.train_step = train_step
    try:
        yield
    finally:
        trainer.train_step = original_step


@contextmanager
def progress_bar(enabled: bool) -> Iterator[list[ProgressCallback]]:
    """A rich progress bar over all training iterations, as a callback for `reporting_iterations`
    (none when not `enabled`)."""
    if not enabled:
        yield []
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=False
    ) as progress:
        task = progress.add_task("train", total=None)

        def show(step: TrainingProgress) -> None:
            progress.update(task, total=step.total, completed=step.done)

        yield [show]
