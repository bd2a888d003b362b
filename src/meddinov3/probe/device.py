"""`--device auto|cpu|cuda` to a torch device, with a clear error when CUDA is asked for and absent."""

from __future__ import annotations

import torch

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str | torch.device) -> torch.device:
    """auto: the first CUDA device when torch sees one, else the CPU."""
    if isinstance(name, torch.device):
        return name
    if name not in DEVICES and not name.startswith("cuda:"):
        raise ValueError(f"--device must be one of {', '.join(DEVICES)}, got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: torch sees no CUDA device; use --device cpu (or auto)")
    return torch.device(name)
