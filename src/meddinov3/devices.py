"""Which torch device a job runs on: `auto` takes a CUDA GPU, else Apple's MPS, else the CPU.

Shared by every command with a `--device` option, so "auto" means the same everywhere.
"""

from __future__ import annotations

import torch

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def pick_device(name: str | torch.device = "auto") -> torch.device:
    """The device `name` stands for (a torch.device is taken as it is; "cuda:N" names one GPU); an
    explicit device the machine lacks is an error, not a fallback."""
    if isinstance(name, torch.device):
        return name
    if name not in DEVICE_CHOICES and not name.startswith("cuda:"):
        raise ValueError(f"device must be one of {', '.join(DEVICE_CHOICES)}, got {name!r}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name} requested but torch sees no CUDA device; use auto or cpu")
    if name == "mps" and not _mps_available():
        raise ValueError("device mps requested but this machine has no Apple MPS device; use auto or cpu")
    return torch.device(name)
