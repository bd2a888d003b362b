"""Where a backbone's slice features live: on disk, keyed by what they depend on, or in memory.

A disk cache folder holds one backbone + layer choice + slice size + device kind; its name is a
hash of the weights' tensors (so a file, a re-export of the same weights, or the same random
twin all land in the same place, and changed weights never do). Inside, one .npy per case and
split, named by a hash of the image file (size, mtime) and the slices taken from it. Files are
written atomically, so a run killed midway resumes with the cases it finished.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from meddinov3.intensity import CT3M_MEAN, CT3M_STD, HU_CLIP
from meddinov3.io import atomic_write

# Bump when what a cached file means changes (preprocessing, storage dtype, layout).
CACHE_FORMAT = 1


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:20]


def weights_fingerprint(backbone: nn.Module) -> str:
    """Hash of the module's class, its config (if it has one) and every tensor of its state dict."""
    h = hashlib.sha256(f"{type(backbone).__module__}.{type(backbone).__qualname__}".encode())
    config = getattr(backbone, "config", None)
    if hasattr(config, "to_dict"):
        h.update(json.dumps(config.to_dict(), sort_keys=True).encode())
    for name, tensor in sorted(backbone.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        # Viewed as bytes: numpy has no bfloat16 (MedDINOv3 stores its RoPE periods in it).
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:20]


def file_fingerprint(path: Path) -> list[Any]:
    stat = path.stat()
    return [path.name, stat.st_size, stat.st_mtime_ns]


def cache_folder(root: Path, backbone: nn.Module, blocks: Any, size: int, device_type: str) -> Path:
    key = {
        "format": CACHE_FORMAT, "weights": weights_fingerprint(backbone), "patch": int(backbone.patch_size),
        "blocks": blocks, "size": size,
        "device": device_type, "normalisation": [list(HU_CLIP), CT3M_MEAN, CT3M_STD],
    }
    return root / digest(key)


class FeatureStore:
    """Per-part feature arrays, (slices, channels, h, w) float16; counts what it computed and reused."""

    def __init__(self, folder: Path | None = None):
        self.folder = folder
        self._memory: dict[str, np.ndarray] = {}
        self.computed_slices = 0
        self.reused_slices = 0

    def _path(self, part: str) -> Path:
        assert self.folder is not None
        return self.folder / f"{part}.npy"

    def get(self, part: str) -> np.ndarray | None:
        """The stored array (memory-mapped from disk), or None; a hit counts as reused slices."""
        if self.folder is None:
            found = self._memory.get(part)
        else:
            path = self._path(part)
            found = np.load(path, mmap_mode="r", allow_pickle=False) if path.exists() else None
        if found is not None:
            self.reused_slices += len(found)
        return found

    def put(self, part: str, features: np.ndarray) -> np.ndarray:
        self.computed_slices += len(features)
        features = np.ascontiguousarray(features, dtype=np.float16)
        if self.folder is None:
            self._memory[part] = features
            return features
        path = self._path(part)
        atomic_write(path, lambda tmp: _save_npy(tmp, features))
        return np.load(path, mmap_mode="r", allow_pickle=False)


def _save_npy(path: str, array: np.ndarray) -> None:
    # np.save on a name without ".npy" would append the suffix; a file object writes where told.
    with open(path, "wb") as handle:
        np.save(handle, array, allow_pickle=False)
