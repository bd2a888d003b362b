"""The linear head: standardised features, a 1x1 convolution, logits upsampled bilinearly.

Standardising each channel with the training features' mean and std plays the role of the
BatchNorm in DINOv3's linear head, with fixed statistics so the result cannot depend on batch
order. The head starts at zero (the problem is convex; no random init to seed) and trains on
minibatches drawn with a seeded generator, so a seed gives the same head on every run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from meddinov3.probe.config import ProbeConfig
from meddinov3.probe.slices import IGNORE_INDEX


def interpolation_matrix(out_size: int, in_size: int, device: torch.device) -> Tensor:
    """(out, in) matrix of 1D bilinear resizing (align_corners=False), as F.interpolate weighs it."""
    eye = torch.eye(in_size, device=device)[:, None]
    return F.interpolate(eye, size=out_size, mode="linear", align_corners=False)[:, 0].T


def upsample(logits: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resizing as two matrix products: the same values as F.interpolate, but a backward
    pass without the atomic adds that make F.interpolate's gradient vary run to run on CUDA."""
    rows = interpolation_matrix(size[0], logits.shape[-2], logits.device)
    cols = interpolation_matrix(size[1], logits.shape[-1], logits.device)
    return rows @ logits @ cols.T


class LinearHead(nn.Module):
    def __init__(self, mean: Tensor, std: Tensor, num_classes: int):
        super().__init__()
        self.register_buffer("mean", mean.float())
        self.register_buffer("std", std.float())
        self.weight = nn.Parameter(torch.zeros(num_classes, len(mean)))
        self.bias = nn.Parameter(torch.zeros(num_classes))

    def forward(self, features: Tensor, size: tuple[int, int]) -> Tensor:
        """(b, C, h, w) features -> (b, K, *size) logits."""
        x = (features.float() - self.mean[:, None, None]) / self.std[:, None, None]
        logits = torch.einsum("kc,bchw->bkhw", self.weight, x) + self.bias[:, None, None]
        return upsample(logits, size)


def channel_stats(features: Sequence[np.ndarray], chunk: int = 64) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std over every slice and position, accumulated in float64."""
    total = squares = None
    count = 0
    for array in features:
        for start in range(0, len(array), chunk):
            x = torch.from_numpy(np.array(array[start : start + chunk])).double()
            s, q = x.sum(dim=(0, 2, 3)), (x * x).sum(dim=(0, 2, 3))
            total, squares = (s, q) if total is None else (total + s, squares + q)
            count += x.numel() // x.shape[1]
    mean = total / count
    std = (squares / count - mean * mean).clamp_min(0).sqrt()
    # A constant channel carries nothing; dividing by 1 keeps it at 0 instead of inf.
    return mean.float(), torch.where(std > 1e-6, std, torch.ones_like(std)).float()


def learning_rate(step: int, config: ProbeConfig) -> float:
    """Linear warmup, then cosine decay to 0 over the remaining steps."""
    warmup = max(1, round(config.warmup_share * config.steps))
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, config.steps - warmup)
    return config.lr * 0.5 * (1 + math.cos(math.pi * progress))


def train_head(
    features: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    num_classes: int,
    config: ProbeConfig,
    device: torch.device,
    advance: Callable[[float], None] = lambda loss: None,
) -> tuple[LinearHead, float]:
    """Fit the head on (slices, C, h, w) features and (slices, S, S) uint8 targets, part by part.

    Returns the head and the mean loss over the last tenth of the steps."""
    index = [(part, row) for part, array in enumerate(features) for row in range(len(array))]
    head = LinearHead(*channel_stats(features), num_classes).to(device)
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    order: list[int] = []
    tail: list[float] = []
    for step in range(config.steps):
        if len(order) < config.batch_size:
            order += torch.randperm(len(index), generator=generator).tolist()
        batch, order = [index[i] for i in order[: config.batch_size]], order[config.batch_size :]
        x = torch.from_numpy(np.stack([features[p][r] for p, r in batch])).to(device)
        y = torch.from_numpy(np.stack([targets[p][r] for p, r in batch])).to(device).long()
        loss = F.cross_entropy(head(x, tuple(y.shape[-2:])), y, ignore_index=IGNORE_INDEX)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = loss.item()
        if step >= config.steps - max(1, config.steps // 10):
            tail.append(value)
        advance(value)
    return head.eval(), float(np.mean(tail))
