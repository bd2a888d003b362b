"""Implicit organ shapes in millimetres, evaluated one axial plane at a time.

A shape answers "which pixels of this plane are inside me?" as a :class:`Region`: a boolean
mask over a rectangular window of the plane (so small organs cost little on large planes).
Coordinates follow DICOM LPS: x toward the patient's left, y toward posterior, z superior.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from meddinov3.synth.fields import SmoothField


@dataclass(frozen=True)
class Plane:
    """Pixel-centre coordinates (mm) of one axial plane: x per column, y per row."""

    x: np.ndarray  # (cols,)
    y: np.ndarray  # (rows,)
    z: float

    @property
    def shape(self) -> tuple[int, int]:
        return (self.y.size, self.x.size)


@dataclass
class Region:
    rows: slice
    cols: slice
    mask: np.ndarray  # bool, (rows, cols) of the window

    def within(self, other: "Region") -> "Region":
        """This mask restricted to pixels also inside ``other`` (same plane)."""
        full = np.zeros(self.mask.shape, bool)
        r0 = max(self.rows.start, other.rows.start)
        r1 = min(self.rows.stop, other.rows.stop)
        c0 = max(self.cols.start, other.cols.start)
        c1 = min(self.cols.stop, other.cols.stop)
        if r0 < r1 and c0 < c1:
            mine = (slice(r0 - self.rows.start, r1 - self.rows.start),
                    slice(c0 - self.cols.start, c1 - self.cols.start))
            theirs = (slice(r0 - other.rows.start, r1 - other.rows.start),
                      slice(c0 - other.cols.start, c1 - other.cols.start))
            full[mine] = other.mask[theirs]
        return Region(self.rows, self.cols, self.mask & full)


def window(axis: np.ndarray, low: float, high: float) -> slice:
    start, stop = np.searchsorted(axis, [low, high])
    return slice(int(start), int(stop))


def window_axes(plane: Plane, center: np.ndarray, reach: float):
    """(rows, cols, x, y): the window of the plane within ``reach`` of ``center`` and its axes."""
    rows = window(plane.y, center[1] - reach, center[1] + reach)
    cols = window(plane.x, center[0] - reach, center[0] + reach)
    if rows.start >= rows.stop or cols.start >= cols.stop:
        return None
    return rows, cols, plane.x[cols], plane.y[rows]


def rotation(yaw: float, pitch: float) -> np.ndarray:
    """Rotation about z by ``yaw``, then about x by ``pitch`` (radians)."""
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    about_z = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    about_x = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    return about_z @ about_x


@dataclass
class Blob:
    """An ellipsoid whose surface is pushed in and out by a smooth random field.

    level < 1 inside; ``bump`` is the relative amplitude of the deformation (0.1 = +-10 %).
    """

    center: np.ndarray
    radii: np.ndarray
    yaw: float = 0.0
    pitch: float = 0.0
    bump: float = 0.0
    surface: SmoothField | None = None

    def __post_init__(self) -> None:
        self.center = np.asarray(self.center, float)
        self.radii = np.asarray(self.radii, float)
        # Local normalised coordinates u = to_local @ (p - center); |u| = 1 on the ellipsoid.
        self._to_local = np.diag(1.0 / self.radii) @ rotation(self.yaw, self.pitch).T
        self._surface = None
        if self.surface is not None and self.bump:
            self._surface = self.surface.affine(self._to_local, self.center)

    @property
    def reach(self) -> float:
        return float(self.radii.max() * (1.0 + 2.5 * self.bump))

    def level(self, x: np.ndarray, y: np.ndarray, z: float) -> np.ndarray:
        """Deformed normalised radius on the grid of axes x (columns), y (rows); < 1 inside."""
        m = self._to_local
        dx, dy, dz = x - self.center[0], y - self.center[1], z - self.center[2]
        squared = np.zeros((y.size, x.size))
        for i in range(3):
            squared += (m[i, 1] * dy[:, None] + (m[i, 0] * dx[None, :] + m[i, 2] * dz)) ** 2
        radius = np.sqrt(squared)
        if self._surface is not None:
            radius -= self.bump * self._surface.grid(x, y, z)
        return radius

    def region(self, plane: Plane, shrink: float = 1.0) -> Region | None:
        """Pixels with level < ``shrink`` (shrink < 1 gives a concentric inner core)."""
        if abs(plane.z - self.center[2]) > self.reach:
            return None
        axes = window_axes(plane, self.center, self.reach)
        if axes is None:
            return None
        rows, cols, x, y = axes
        mask = self.level(x, y, plane.z) < shrink
        return Region(rows, cols, mask) if mask.any() else None


@dataclass
class Tube:
    """A vessel-like cylinder along z whose centre line and radius vary smoothly with z."""

    points_z: np.ndarray  # control heights, increasing
    points_xy: np.ndarray  # (n, 2) centre at those heights
    radius: np.ndarray  # (n,) radius at those heights
    squash: float = 1.0  # y radius / x radius

    def region(self, plane: Plane) -> Region | None:
        if not self.points_z[0] <= plane.z <= self.points_z[-1]:
            return None
        cx = np.interp(plane.z, self.points_z, self.points_xy[:, 0])
        cy = np.interp(plane.z, self.points_z, self.points_xy[:, 1])
        r = float(np.interp(plane.z, self.points_z, self.radius))
        axes = window_axes(plane, np.array([cx, cy]), r * max(1.0, self.squash) + 1.0)
        if axes is None:
            return None
        rows, cols, x, y = axes
        mask = ((x[None, :] - cx) / r) ** 2 + ((y[:, None] - cy) / (r * self.squash)) ** 2 < 1.0
        return Region(rows, cols, mask) if mask.any() else None
