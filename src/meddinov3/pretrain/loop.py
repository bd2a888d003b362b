"""The pretraining loop: data, progress, metrics, checkpoints, resume and export.

One iteration (teacher targets, student loss, AdamW step, EMA update) is `Pretrainer.step`.
Runs as one process or under torchrun (DDP: gradients averaged over ranks; Sinkhorn-Knopp and
centering reduced over ranks, so the targets are those of the global batch). Writes to
`run.output_dir`: `checkpoint.pth` (resume), `metrics.jsonl` (one line per iteration),
`config.yaml` (with the learning rates trained with beside the base ones), `learning.png` (the
learning monitors, see `monitors.py`), `snapshots/iteration_N/` (the EMA teacher after each of
`run.keep_teacher_at`) and at the end `export/` (teacher in the MedDINOv3 layout + safetensors backbone).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch
import torch.distributed as dist
import yaml
from torch.utils.data import DataLoader

from meddinov3.io import atomic_write_text
from meddinov3.pretrain.checkpoint import (
    CHECKPOINT_NAME, EXPORT_DIR, export_teacher, load_checkpoint, save_checkpoint, snapshot_folder,
)
from meddinov3.pretrain.collate import collate_multicrop
from meddinov3.pretrain.config import PretrainConfig
from meddinov3.pretrain.lr_scaling import describe as describe_lr
from meddinov3.pretrain.data import ConcatSlices, PretrainDataset, ShardedBatchSampler, build_corpus
from meddinov3.pretrain.metrics import METRICS_NAME, read_metrics
from meddinov3.pretrain.distributed import DistInfo, init_distributed, rank_device
from meddinov3.pretrain.monitors import UniformWatch
from meddinov3.pretrain.probing import TeacherProbe
from meddinov3.pretrain.pretrainer import Pretrainer
from meddinov3.viz.learning import learning_figure

log = logging.getLogger("meddinov3.pretrain")
LEARNING_FIGURE = "learning.png"


def make_loader(
    corpus: ConcatSlices, config: PretrainConfig, dist_info: DistInfo, patch_size: int, start: int, end: int, device: torch.device
) -> DataLoader:
    dataset = PretrainDataset(corpus, config, patch_size)
    sampler = ShardedBatchSampler(
        len(corpus), config.optim.global_batch_size, dist_info.rank, dist_info.world_size, config.data.seed, start, end
    )
    workers = config.data.num_workers
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate_multicrop,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        prefetch_factor=2 if workers > 0 else None,
        # Its own generator: creating the loader must not consume the global RNG that stochastic
        # depth draws from, or a resumed run would drift from an uninterrupted one.
        generator=torch.Generator(),
    )


def _trim_metrics(path: Path, before_iteration: int) -> None:
    """On resume, drop logged iterations the checkpoint does not include (they will be redone)."""
    if not path.exists():
        return
    kept = [line for line in path.read_text(encoding="utf-8").splitlines() if line and json.loads(line)["iteration"] < before_iteration]
    atomic_write_text(path, "".join(f"{line}\n" for line in kept))


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("pretrain"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeRemainingColumn(),
        disable=not enabled,
    )


@dataclass
class TrainResult:
    iteration: int
    history: list[dict[str, float]]
    exported: dict[str, Path] | None


def _iterate(
    loader: Iterable, trainer: Pretrainer, output: Path, is_main: bool, end: int, probe: TeacherProbe | None
) -> list[dict[str, float]]:
    cfg = trainer.config
    history = []
    metrics_context = (output / METRICS_NAME).open("a", encoding="utf-8") if is_main else contextlib.nullcontext()
    with _progress(is_main) as progress, metrics_context as metrics_file:
        task = progress.add_task("pretrain", total=end, completed=trainer.iteration, status="")
        watch = UniformWatch(cfg.optim.warmup_iterations, cfg.model.head_prototypes)
        for batch in loader:
            iteration = trainer.iteration
            metrics = trainer.step(batch, monitor=iteration % cfg.run.log_every == 0)
            if not math.isfinite(metrics["loss"]):
                raise FloatingPointError(f"loss is {metrics['loss']} at iteration {iteration}; stopping")
            if probe is not None and probe.due(trainer.iteration, end):
                metrics.update(probe.measure(trainer.teacher.backbone))
            history.append({"iteration": iteration, **metrics})
            if is_main:
                metrics_file.write(json.dumps({"iteration": iteration, **metrics}) + "\n")
                metrics_file.flush()
                if iteration % cfg.run.log_every == 0:
                    progress.update(task, status=_status(metrics))
                    warning = watch.check(iteration, metrics)
                    if warning:
                        log.warning(warning)
                progress.advance(task)
            done = trainer.iteration
            if done in cfg.run.keep_teacher_at and is_main:
                # Before the checkpoint of this iteration: a resumed run never lacks a snapshot it passed.
                kept = export_teacher(trainer.teacher, snapshot_folder(output, done))
                log.info("kept the EMA teacher after iteration %d: %s", done, kept["teacher_checkpoint"])
            if done % cfg.run.checkpoint_every == 0 and done < end:
                _save(trainer, output, is_main)
    return history


def _status(metrics: dict[str, float]) -> str:
    return (
        f"loss {metrics['loss']:.4f}  DINO {metrics['dino_global_frac']:.3f} ln K  "
        f"teacher entropy {metrics['teacher_entropy']:.2f}/{metrics['teacher_mean_entropy']:.2f}"
    )


def _save(trainer: Pretrainer, output: Path, is_main: bool) -> None:
    state = trainer.state_dict()  # collective (RNG gather): every rank takes part
    if is_main:
        save_checkpoint(output / CHECKPOINT_NAME, state)


def train(config: PretrainConfig) -> TrainResult:
    """Run (or resume) the stage described by `config` up to optim.iterations or run.stop_after."""
    device = rank_device(config.run.device, int(os.environ.get("LOCAL_RANK", 0)))
    dist_info, created_group = init_distributed(device)
    try:
        return _train(config, device, dist_info)
    finally:
        if created_group:
            dist.destroy_process_group()


def _train(config: PretrainConfig, device: torch.device, dist_info: DistInfo) -> TrainResult:
    corpus = build_corpus(config)  # fails early, before models are built, if there is no data
    output = Path(config.run.output_dir)
    config.validate()  # records the learning rates trained with in config.yaml, beside the base ones
    trainer = Pretrainer(config, device, dist_info)  # reads (and checks) model.init before any file is written
    if dist_info.is_main:
        output.mkdir(parents=True, exist_ok=True)
        atomic_write_text(output / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))

    checkpoint = output / CHECKPOINT_NAME
    if config.run.resume and checkpoint.exists():
        trainer.load_state_dict(load_checkpoint(checkpoint))
        log.info("resumed from %s at iteration %d", checkpoint, trainer.iteration)
    if dist_info.is_main:
        _trim_metrics(output / METRICS_NAME, trainer.iteration)
        # After the models are built: a bad model.init is the only line a failed start prints.
        log.info("%s", describe_lr(config.optim))
        beyond = [i for i in config.run.keep_teacher_at if i > config.optim.iterations]
        if beyond:
            log.warning("run.keep_teacher_at %s: beyond optim.iterations %d, never kept", beyond, config.optim.iterations)

    total = config.optim.iterations
    end = total if config.run.stop_after is None else min(total, trainer.iteration + config.run.stop_after)
    loader = make_loader(corpus, config, dist_info, trainer.patch_size, trainer.iteration, end, device)
    probe = None
    if config.eval.probe_dataset and dist_info.is_main:
        probe = TeacherProbe(config.eval, trainer.teacher.backbone, config.run.seed)
    history = _iterate(loader, trainer, output, dist_info.is_main, end, probe)

    _save(trainer, output, dist_info.is_main)
    if dist_info.is_main:
        learning_figure(read_metrics(output / METRICS_NAME), output / LEARNING_FIGURE)
    exported = None
    if trainer.iteration >= total and dist_info.is_main:
        exported = export_teacher(trainer.teacher, output / EXPORT_DIR)
    return TrainResult(iteration=trainer.iteration, history=history, exported=exported)
