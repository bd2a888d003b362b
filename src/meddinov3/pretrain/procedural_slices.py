"""Procedural CT-like axial slices: a body outline, organs, lungs, spine and noise, in HU.

They stand in for a curated corpus in smoke runs, tests and benchmarks; every slice is a pure
function of its index. They are not a substitute for real CT when pretraining for real.
"""

from __future__ import annotations

import numpy as np

AIR_HU = -1000


def _ellipse(shape: tuple[int, int], centre: tuple[float, float], radii: tuple[float, float], angle: float) -> np.ndarray:
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    y, x = rows - centre[0], cols - centre[1]
    cos, sin = np.cos(angle), np.sin(angle)
    u = (x * cos + y * sin) / radii[1]
    v = (-x * sin + y * cos) / radii[0]
    return u**2 + v**2 <= 1.0


def _smooth(image: np.ndarray, passes: int = 2) -> np.ndarray:
    """Cheap blur (3x3 box, repeated) so edges look like a reconstructed CT, not a drawing."""
    for _ in range(passes):
        padded = np.pad(image, 1, mode="edge")
        image = sum(padded[dy : dy + image.shape[0], dx : dx + image.shape[1]] for dy in range(3) for dx in range(3)) / 9.0
    return image


def synthetic_ct_slice(index: int, size: int = 256, seed: int = 0) -> np.ndarray:
    """One (size, size) int16 slice in Hounsfield units."""
    rng = np.random.default_rng([seed, index])
    shape = (size, size)
    s = size / 256.0
    image = np.full(shape, AIR_HU, dtype=np.float32)
    centre = (size / 2 + rng.uniform(-10, 10) * s, size / 2 + rng.uniform(-10, 10) * s)
    body_radii = (rng.uniform(70, 95) * s, rng.uniform(95, 120) * s)
    image[_ellipse(shape, centre, body_radii, 0.0)] = rng.uniform(-110, -80)  # subcutaneous fat
    inner = (body_radii[0] - rng.uniform(8, 16) * s, body_radii[1] - rng.uniform(8, 16) * s)
    image[_ellipse(shape, centre, inner, 0.0)] = rng.uniform(30, 50)  # muscle / soft tissue
    thoracic = rng.uniform() < 0.4
    if thoracic:
        for side in (-1, 1):
            lung_centre = (centre[0] - 5 * s, centre[1] + side * inner[1] * 0.45)
            lung_radii = (inner[0] * rng.uniform(0.6, 0.8), inner[1] * rng.uniform(0.3, 0.4))
            image[_ellipse(shape, lung_centre, lung_radii, rng.uniform(-0.3, 0.3))] = rng.uniform(-880, -820)
    else:
        organs = [(60, 0.45, -0.4), (50, 0.25, 0.5), (30, 0.18, -0.55), (30, 0.18, 0.55), (-5, 0.2, 0.1)]
        for hu, scale, offset in organs:
            if rng.uniform() < 0.8:
                organ_centre = (centre[0] + rng.uniform(-0.3, 0.2) * inner[0], centre[1] + offset * inner[1])
                organ_radii = (scale * inner[0] * rng.uniform(0.7, 1.3), scale * inner[1] * rng.uniform(0.7, 1.3))
                image[_ellipse(shape, organ_centre, organ_radii, rng.uniform(0, np.pi))] = hu + rng.normal(0, 5)
    spine_centre = (centre[0] + inner[0] * 0.65, centre[1])
    image[_ellipse(shape, spine_centre, (14 * s, 16 * s), 0.0)] = rng.uniform(500, 800)  # vertebral body
    image[_ellipse(shape, spine_centre, (7 * s, 8 * s), 0.0)] = rng.uniform(150, 250)  # cancellous core
    image = _smooth(image) + rng.normal(0, 12, shape).astype(np.float32)
    return np.clip(image, -1024, 3071).astype(np.int16)


class SyntheticSlices:
    """A sized sequence of synthetic slices, the same interface as a slice corpus."""

    # Drawing a slice costs about as much as cropping it; keep the first few hundred (32 MiB).
    CACHE_LIMIT = 256

    def __init__(self, n_slices: int, size: int = 256, seed: int = 0):
        self.n_slices = n_slices
        self.size = size
        self.seed = seed
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.n_slices

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < self.n_slices:
            raise IndexError(f"synthetic slice {index} out of range [0, {self.n_slices})")
        if index in self._cache:
            return self._cache[index]
        image = synthetic_ct_slice(index, self.size, self.seed)
        if len(self._cache) < self.CACHE_LIMIT:
            self._cache[index] = image
        return image
