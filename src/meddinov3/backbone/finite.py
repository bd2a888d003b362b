"""Weights are finite before anything uses them.

A NaN or an infinity in a weights file (a training that diverged, a broken conversion, a bad
copy) loads without a word and only shows later: as a `linalg` error deep inside PCA, a loss of
NaN after the first iteration, or label maps of one class. Every weights file is read through
`meddinov3.backbone.checkpoints.read_checkpoint`, which checks here, so the file and its first
bad tensor are named before any output is written.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

import torch

from meddinov3.backbone.errors import CheckpointError


def _tensors(obj: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """(key path, tensor) for every tensor inside nested dicts, lists and tuples, in file order."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            yield from _tensors(value, f"{prefix}/{key}" if prefix else str(key))
    elif isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            yield from _tensors(value, f"{prefix}/{index}" if prefix else str(index))


def non_finite_tensor(obj: Any) -> str | None:
    """The first tensor of `obj` (a state dict or a checkpoint) holding NaN or infinite values,
    described (key, how many of how many values, which kinds); None when all are finite."""
    for key, tensor in _tensors(obj):
        if not (tensor.is_floating_point() or tensor.is_complex()) or tensor.numel() == 0:
            continue
        finite = torch.isfinite(tensor)
        if bool(finite.all()):
            continue
        nan = int(torch.isnan(tensor).sum())
        kinds = ", ".join(k for k, n in (("NaN", nan), ("infinite", tensor.numel() - int(finite.sum()) - nan)) if n)
        return f"tensor {key} holds {tensor.numel() - int(finite.sum())} of {tensor.numel()} values that are {kinds}"
    return None


def check_finite(obj: Any, source: str) -> None:
    """CheckpointError naming `source` and the first tensor of `obj` that is not finite."""
    problem = non_finite_tensor(obj)
    if problem:
        raise CheckpointError(f"{source}: {problem}: broken weights (a training that diverged?), not used")
