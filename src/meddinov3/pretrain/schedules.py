"""Per-iteration values of every schedule, as pure functions of the iteration (resume needs no state)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from meddinov3.pretrain.config import PretrainConfig
from meddinov3.pretrain.lr_scaling import scaled_rates


def warmup_cosine(iteration: int, total: int, peak: float, end: float, warmup: int = 0, start: float = 0.0) -> float:
    """Linear from `start` to `peak` over `warmup` iterations, then cosine from `peak` to `end`."""
    if iteration < warmup:
        return start + (peak - start) * iteration / warmup
    span = max(total - warmup, 1)
    progress = min((iteration - warmup) / span, 1.0)
    return end + 0.5 * (peak - end) * (1 + math.cos(math.pi * progress))


def cosine_ramp(iteration: int, ramp: int, start: float, end: float) -> float:
    """Half a cosine from `start` to `end` over `ramp` iterations, then `end` (DINOv3's loss-weight ramps)."""
    if iteration >= ramp:
        return end
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * iteration / ramp))


def linear_warmup_then_constant(iteration: int, warmup: int, start: float, value: float) -> float:
    if iteration < warmup:
        return start + (value - start) * iteration / warmup
    return value


@dataclass
class ScheduleValues:
    lr: float
    last_layer_lr: float
    weight_decay: float
    momentum: float
    teacher_temp: float
    dino_local_weight: float
    gram_weight: float


def schedule_values(config: PretrainConfig, iteration: int) -> ScheduleValues:
    optim, loss, gram = config.optim, config.loss, config.gram
    total = optim.iterations
    rates = scaled_rates(optim)
    lr = warmup_cosine(iteration, total, rates.lr, rates.min_lr, optim.warmup_iterations)
    return ScheduleValues(
        lr=lr,
        # DINO freezes the prototypes at first: learning them before the backbone settles collapses them.
        last_layer_lr=0.0 if iteration < optim.freeze_last_layer_iterations else lr,
        weight_decay=warmup_cosine(iteration, total, optim.weight_decay, optim.weight_decay_end),
        momentum=warmup_cosine(iteration, total, optim.momentum, optim.momentum_end),
        teacher_temp=linear_warmup_then_constant(
            iteration, optim.teacher_temp_warmup_iterations, optim.teacher_temp_warmup_start, optim.teacher_temp
        ),
        dino_local_weight=cosine_ramp(iteration, loss.dino_local_weight_ramp, loss.dino_local_weight_start, loss.dino_local_weight),
        gram_weight=cosine_ramp(iteration, gram.weight_ramp, gram.weight_start, gram.weight),
    )
