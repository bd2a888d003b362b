"""Where the demo's fine-tuning runs train: on a CPU, side by side, each in a process of its own
with one torch thread; on a GPU, one after the other in this process.

The demo's ViT is narrow (width 96, 64 patches per 128-px patch): its matrix products are too
small for a second thread to help, and 1,440 iterations took as long with two threads as with one
(measured on 2 cores: 0.125 s and 0.105 s per iteration). Two processes on two cores train two
runs in the time of one. Runs are listed in pairs (pretrained, random) of the same training set,
so the two inits of a comparison train at the same time, under the same load. Every run resumes
from its last checkpoint; a finished one is only read.
"""

from __future__ import annotations

import os
import queue
import time
import traceback
from collections.abc import Sequence
from typing import Any

from meddinov3.demo.pretraining import random_backbone
from meddinov3.demo.steps import StepContext, own_cpu_seconds
from meddinov3.demo.training_runs import FineTuningRun, augmentation_workers, run_summary, training_job
from meddinov3.demo.workspace import Workspace

# Every run holds about 1.1 GB (measured): four at once stay within a laptop's memory.
MAX_PROCESSES = 4
POLL_SECONDS = 0.5


def processes_for(workspace: Workspace, runs: int) -> int:
    """How many runs train at once: one per CPU core (up to MAX_PROCESSES); 0 on a GPU (in this process)."""
    if workspace.config.device == "cuda":
        return 0
    return max(1, min(runs, os.cpu_count() or 1, MAX_PROCESSES))


def train_in_child(workspace: Workspace, run: FineTuningRun, index: int, messages: Any) -> None:
    """A spawned process: one torch thread, one run, its progress and outcome sent to `messages`."""
    import torch

    from meddinov3.nnunet.training import run_training

    torch.set_num_threads(1)
    start = time.perf_counter()
    try:
        run_training(training_job(workspace, run, lambda progress: messages.put((index, "progress", progress))))
    except BaseException as error:
        messages.put((index, "error", f"{type(error).__name__}: {error}\n{traceback.format_exc()}"))
        raise
    messages.put((index, "done", (time.perf_counter() - start, own_cpu_seconds())))


class Board:
    """The step's progress bar over all runs: iterations done per run, what the active ones do."""

    def __init__(self, context: StepContext, runs: Sequence[FineTuningRun], labels: Sequence[str]):
        self.context, self.runs, self.labels = context, runs, labels
        self.done = [run.iterations(context.workspace) if run.finished(context.workspace) else 0 for run in runs]
        self.status: dict[int, str] = {}
        context.expect(sum(run.iterations(context.workspace) for run in runs), "starting")

    def report(self, index: int, progress: Any) -> None:
        self.done[index] = progress.done
        run = self.runs[index]
        self.status[index] = (f"{self.labels[index]}: " + ("loading" if progress.loss is None else
                              f"epoch {progress.epoch + 1}/{run.epochs}, loss {progress.loss:.3f}"))
        self.context.update(sum(self.done), "; ".join(self.status[k] for k in sorted(self.status)))

    def finish(self, index: int) -> None:
        self.done[index] = self.runs[index].iterations(self.context.workspace)
        self.status.pop(index, None)
        self.context.update(sum(self.done))


def train_here(context: StepContext, runs: Sequence[FineTuningRun], board: Board) -> dict[int, tuple[float, float]]:
    from meddinov3.nnunet.training import run_training

    measured = {}
    for index, run in enumerate(runs):
        if run.finished(context.workspace):
            continue
        start, start_cpu = time.perf_counter(), own_cpu_seconds()
        run_training(training_job(context.workspace, run, lambda progress, index=index: board.report(index, progress)))
        measured[index] = (time.perf_counter() - start, own_cpu_seconds() - start_cpu)
        board.finish(index)
    return measured


def train_apart(context: StepContext, runs: Sequence[FineTuningRun], board: Board,
                processes: int) -> dict[int, tuple[float, float]]:
    import multiprocessing

    spawn = multiprocessing.get_context("spawn")  # nnU-Net and torch do not survive a fork
    messages = spawn.Queue()
    pending = [index for index, run in enumerate(runs) if not run.finished(context.workspace)]
    active: dict[int, Any] = {}
    measured: dict[int, tuple[float, float]] = {}
    try:
        while pending or active:
            while pending and len(active) < processes:
                index = pending.pop(0)
                active[index] = spawn.Process(target=train_in_child, args=(context.workspace, runs[index], index,
                                                                           messages), name=f"demo-{board.labels[index]}")
                active[index].start()
            try:
                index, kind, payload = messages.get(timeout=POLL_SECONDS)
            except queue.Empty:
                check_alive(active, board.labels)
                continue
            if kind == "progress":
                board.report(index, payload)
            elif kind == "error":
                raise RuntimeError(f"fine-tuning {board.labels[index]} failed: {payload}")
            else:
                measured[index] = payload
                active.pop(index).join()
                board.finish(index)
    finally:
        for process in active.values():
            process.terminate()
            process.join()
    return measured


def check_alive(active: dict[int, Any], labels: Sequence[str]) -> None:
    """A run whose process ended without a word (killed, out of memory) fails the step by name."""
    for index, process in active.items():
        if not process.is_alive() and process.exitcode is not None:
            raise RuntimeError(f"fine-tuning {labels[index]} stopped (exit code {process.exitcode}) without a result")


def train_runs(context: StepContext, runs: Sequence[FineTuningRun], labels: Sequence[str]) -> list[dict[str, Any]]:
    """Train (or resume, or only read) every run; their summaries, in order, with the wall-clock and
    CPU seconds of the training done by this call (None for a run finished before)."""
    workspace = context.workspace
    random_backbone(workspace)  # written once here, not by two processes at once
    os.environ["nnUNet_n_proc_DA"] = str(augmentation_workers(workspace.config.device))
    board = Board(context, runs, labels)
    processes = processes_for(workspace, sum(not run.finished(workspace) for run in runs))
    measured = train_here(context, runs, board) if processes <= 1 else train_apart(context, runs, board, processes)
    summaries = []
    for index, run in enumerate(runs):
        seconds, cpu = measured.get(index, (None, None))
        summaries.append({**run_summary(workspace, run), "seconds": seconds, "cpu_seconds": cpu,
                          "side_by_side": processes > 1})
    return summaries
