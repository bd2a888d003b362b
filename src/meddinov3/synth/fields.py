"""Smooth random fields: sums of a few random plane waves.

Cheap to evaluate at any point (no grid, no interpolation), continuous across slices, and fully
determined by the generator they were drawn from: the basis of shape deformation, tubular vessel
patterns and bowel loops.

On an axial pixel grid a plane wave separates: sin(a x + b y + c) = sin(a x) cos(b y + c) +
cos(a x) sin(b y + c), so a whole plane is one small matrix product (``grid``), not one sine per
pixel and mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SmoothField:
    frequencies: np.ndarray  # (n, 3) radians per unit
    phases: np.ndarray  # (n,)
    scale: float  # makes the field's standard deviation about 1

    @classmethod
    def draw(
        cls, rng: np.random.Generator, modes: int, wavelength: tuple[float, float]
    ) -> "SmoothField":
        directions = rng.normal(size=(modes, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        wavenumbers = 2 * np.pi / rng.uniform(*wavelength, size=modes)
        return cls(
            frequencies=directions * wavenumbers[:, None],
            phases=rng.uniform(0, 2 * np.pi, size=modes),
            scale=float(np.sqrt(2.0 / modes)),
        )

    def affine(self, matrix: np.ndarray, origin: np.ndarray) -> "SmoothField":
        """The same field evaluated at ``matrix @ (p - origin)``, as a field of p."""
        frequencies = self.frequencies @ matrix
        return SmoothField(frequencies, self.phases - frequencies @ origin, self.scale)

    def scaled(self, factor: float) -> "SmoothField":
        """The field of p / factor."""
        return SmoothField(self.frequencies / factor, self.phases, self.scale)

    def grid(self, x: np.ndarray, y: np.ndarray, z: float) -> np.ndarray:
        """Values on the (len(y), len(x)) grid of pixel centres x (columns), y (rows)."""
        fx, fy, fz = self.frequencies.T
        row_phase = np.outer(y, fy) + (fz * z + self.phases)  # (rows, n)
        col_phase = np.outer(x, fx)  # (cols, n)
        rows = np.concatenate([np.cos(row_phase), np.sin(row_phase)], axis=1)
        cols = np.concatenate([np.sin(col_phase), np.cos(col_phase)], axis=1)
        return (rows @ cols.T * self.scale).astype(np.float32)


def tubes(a: SmoothField, b: SmoothField, x, y, z: float, width: float) -> np.ndarray:
    """Where two independent fields are both near zero: a tangle of tube-like curves."""
    return (np.abs(a.grid(x, y, z)) < width) & (np.abs(b.grid(x, y, z)) < width)
