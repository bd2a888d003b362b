"""Run the demo as a list of small steps: each one timed, logged, resumable and redoable.

A step is done when OUT/steps/<name>.json exists (written atomically after it succeeded); a
rerun skips it and reuses its recorded summary. An interrupted step is simply run again, and
every step resumes its own partial work (synthesis keeps finished cases, pretraining and nnU-Net
training continue from their checkpoints, prediction keeps finished cases). `--force` deletes
a step's outputs and runs it from scratch.
"""

from __future__ import annotations

import json
import resource
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from rich.console import Console
from rich.progress import Progress, TaskID

from meddinov3.capture import output_to_log
from meddinov3.demo.terminal import log_tail, step_progress
from meddinov3.demo.workspace import Workspace
from meddinov3.errors import InputError
from meddinov3.io import atomic_write_text


class DemoStepError(InputError, RuntimeError):
    """A step failed; the message names it and shows the end of its log."""


@dataclass
class StepContext:
    """What a running step gets: the workspace, its log, its progress bar, earlier summaries."""

    workspace: Workspace
    progress: Progress
    task: TaskID
    log: Path
    records: dict[str, "StepRecord"]  # the steps before, by name

    def summary(self, step: str) -> dict[str, Any]:
        return self.records[step].summary

    def expect(self, total: float | None, status: str = "") -> None:
        """Give the progress bar its amount of work (None: unknown, a spinner)."""
        self.progress.update(self.task, total=total, completed=0, status=status)

    def advance(self, amount: float = 1.0, status: str | None = None) -> None:
        fields = {} if status is None else {"status": status}
        self.progress.update(self.task, advance=amount, **fields)

    def update(self, completed: float, status: str | None = None) -> None:
        fields = {} if status is None else {"status": status}
        self.progress.update(self.task, completed=completed, **fields)


@dataclass(frozen=True)
class Step:
    name: str
    title: str
    run: Callable[[StepContext], dict[str, Any]]  # returns a JSON-serialisable summary
    outputs: Callable[[Workspace], Sequence[Path]] = field(default=lambda workspace: ())


@dataclass
class StepRecord:
    name: str
    title: str
    seconds: float
    # Processor time of this process and its finished children: on a shared or busy machine it
    # shows the work a step needs, which wall-clock time does not.
    cpu_seconds: float
    summary: dict[str, Any]
    skipped: bool = False  # done by an earlier run

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "seconds": self.seconds, "cpu_seconds": self.cpu_seconds,
                "summary": self.summary}


def _used(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def own_cpu_seconds() -> float:
    """CPU seconds of this process alone (a training run in a process of its own)."""
    return _used(resource.RUSAGE_SELF)


def cpu_seconds() -> float:
    """CPU seconds of this process and of its finished children (nnU-Net's augmentation workers)."""
    return _used(resource.RUSAGE_SELF) + _used(resource.RUSAGE_CHILDREN)


def record_path(workspace: Workspace, step: Step) -> Path:
    return workspace.steps / f"{step.name}.json"


def log_path(workspace: Workspace, step: Step) -> Path:
    return workspace.logs / f"{step.name}.log"


def read_record(path: Path) -> StepRecord | None:
    if not path.is_file():
        return None
    values = json.loads(path.read_text(encoding="utf-8"))
    return StepRecord(values["name"], values["title"], float(values["seconds"]), float(values["cpu_seconds"]),
                      values["summary"], skipped=True)


def clear_outputs(workspace: Workspace, step: Step) -> None:
    record_path(workspace, step).unlink(missing_ok=True)
    log_path(workspace, step).unlink(missing_ok=True)
    for path in step.outputs(workspace):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def run_step(step: Step, workspace: Workspace, console: Console, capture: bool,
             records: dict[str, StepRecord]) -> StepRecord:
    log = log_path(workspace, step)
    start, start_cpu = time.perf_counter(), cpu_seconds()
    with step_progress(console) as progress:
        task = progress.add_task(step.title, total=None, status="")
        context = StepContext(workspace, progress, task, log, records)
        try:
            with output_to_log(log, capture):
                summary = step.run(context)
        except KeyboardInterrupt:
            raise
        except Exception as error:
            tail = log_tail(log)
            shown = f"\nlast lines of {log}:\n{tail}" if tail else ""
            raise DemoStepError(f"step {step.name!r} ({step.title}) failed: {type(error).__name__}: {error}{shown}") from error
        seconds = time.perf_counter() - start
        total = progress.tasks[0].total
        progress.update(task, total=total or 1, completed=total or 1, status=f"[green]done[/] in {seconds:.0f} s")
        progress.stop_task(task)
    record = StepRecord(step.name, step.title, seconds, cpu_seconds() - start_cpu, summary)
    atomic_write_text(record_path(workspace, step), json.dumps(record.to_json(), indent=2) + "\n")
    return record


def run_steps(steps: Sequence[Step], workspace: Workspace, console: Console, force: bool,
              capture: bool) -> list[StepRecord]:
    records: dict[str, StepRecord] = {}
    for number, step in enumerate(steps, 1):
        if force:
            clear_outputs(workspace, step)
        record = read_record(record_path(workspace, step))
        if record is not None:
            console.print(f"[dim]{number:>2}/{len(steps)} {step.title}: done by an earlier run "
                          f"({record.seconds:.0f} s), skipped[/]")
        else:
            console.print(f"[bold cyan]{number:>2}/{len(steps)}[/] {step.title}")
            record = run_step(step, workspace, console, capture, records)
        records[step.name] = record
    return list(records.values())
