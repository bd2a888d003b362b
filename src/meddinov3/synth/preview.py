"""Look at a CT slice the way a radiologist does: a window of Hounsfield units to grey."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SOFT_TISSUE = (400.0, 40.0)  # (width, level) in HU


def window_to_grey(hu: np.ndarray, width: float, level: float) -> np.ndarray:
    """HU -> [0, 1]: level - width/2 is black, level + width/2 white."""
    return np.clip((hu.astype(np.float32) - (level - width / 2)) / width, 0.0, 1.0)


def save_window_png(
    hu_slice: np.ndarray, path: str | Path, window: tuple[float, float] = SOFT_TISSUE
) -> Path:
    """Write one axial slice (rows anterior->posterior, columns patient right->left) as PNG."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, window_to_grey(hu_slice, *window), cmap="gray", vmin=0.0, vmax=1.0)
    return path
