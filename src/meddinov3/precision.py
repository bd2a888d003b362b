"""Numeric precision of training and prediction: bf16 or fp16 autocast, or plain fp32.

One vocabulary for `meddinov3 train/predict --precision` and the pretraining config's
`run.precision`. "auto" is bf16 where the device computes it natively (CUDA GPUs from Ampere on:
the DINOv3 backbone was pretrained in bf16, and bf16 needs no gradient scaler), fp16 on older
CUDA GPUs (with a gradient scaler in training), and fp32 elsewhere: CPUs without bf16 units
emulate it slowly, and MPS training is fp32 in nnU-Net. bf16 and fp16 run on every device when
asked for explicitly.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch

PRECISIONS = ("bf16", "fp16", "fp32")
PRECISION_CHOICES = ("auto", *PRECISIONS)
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def default_precision(device: torch.device) -> str:
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"


def resolve_precision(requested: str | None, device: torch.device) -> str:
    """`requested` checked against the device; None or "auto" gives the device's default."""
    if requested in (None, "auto"):
        return default_precision(device)
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, got {requested!r}")
    if requested == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        raise ValueError(f"{torch.cuda.get_device_name(device)} has no native bfloat16; use --precision fp16")
    return requested


def autocast(precision: str, device: torch.device) -> AbstractContextManager:
    """Mixed precision for a forward pass and loss of our own loops (fp32: autocast off)."""
    return torch.autocast(device.type, dtype=DTYPES[precision], enabled=precision != "fp32")


def around_nnunet(precision: str, device: torch.device) -> AbstractContextManager:
    """Run nnU-Net's inference code (validation_step, sliding-window prediction) at `precision`.

    On CUDA nnU-Net opens `torch.autocast("cuda")` itself, taking the dtype that is current when
    it does: set here, with autocast switched off, so that nnU-Net's own context runs in
    `precision` (float32 makes it a no-op). Elsewhere nnU-Net never autocasts, so the context is
    switched on here. (Training steps autocast themselves: see the trainers' `train_step`.)
    """
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=DTYPES[precision], enabled=False)
    return autocast(precision, device)
