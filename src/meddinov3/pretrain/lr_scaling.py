"""DINOv3's learning-rate scaling rules: the rate a run trains with, from the base rate and its global batch.

DINOv3 (`configs/config.py`, `apply_scaling_rules_to_cfg`) multiplies `optim.lr` after writing
its config.yaml, so the rate it reports is the base one:
  - `sqrt_wrt_1024`: lr * 4 * sqrt(global batch / 1024) (x2.83 at 512); the rule of
    `vitl_im1k_lin834.yaml`, the config MedDINOv3's stage 1 was based on;
  - `linear_wrt_256`: lr * global batch / 256;
  - `none`: lr as written.
Its cosine schedules with a constant tail (the Gram and high-resolution phases) scale the peak
and the end rate; the warm-up-then-cosine schedule of lin834 scales only the peak, not `min_lr`
(`scale_min_lr` says which). The global batch is ranks x per-rank batch; the data sampler splits
`optim.global_batch_size` evenly over the ranks, so the two are the same number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

SCALING_RULES = ("none", "linear_wrt_256", "sqrt_wrt_1024")


def lr_scale(rule: str, global_batch: int) -> float:
    """The factor `rule` multiplies the base rate by at `global_batch` images per iteration."""
    if rule == "none":
        return 1.0
    if rule == "linear_wrt_256":
        return global_batch / 256
    if rule == "sqrt_wrt_1024":
        return 4 * math.sqrt(global_batch / 1024)
    raise ValueError(f"optim.scaling_rule must be one of {', '.join(SCALING_RULES)}, got {rule!r}")


@dataclass(frozen=True)
class ScaledRates:
    lr: float
    min_lr: float
    factor: float
    global_batch: int


def scaled_rates(optim: Any) -> ScaledRates:
    """The peak and end rates `optim` (an OptimConfig) trains with."""
    factor = lr_scale(optim.scaling_rule, optim.global_batch_size)
    min_lr = optim.min_lr * factor if optim.scale_min_lr else optim.min_lr
    return ScaledRates(optim.lr * factor, min_lr, factor, optim.global_batch_size)


def describe(optim: Any) -> str:
    """One line for the log: base rate, rule, batch and the rates trained with."""
    rates = scaled_rates(optim)
    return (f"lr {rates.lr:.4g} = base {optim.lr:.4g} x {rates.factor:.4g} ({optim.scaling_rule} at global batch "
            f"{rates.global_batch}); end rate {rates.min_lr:.4g}")
