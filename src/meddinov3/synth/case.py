"""Generate one synthetic CT case: scan geometry, anatomy, rendering with slice partial volume.

Determinism: case ``index`` of seed ``seed`` draws everything from its own generator,
``numpy.random.default_rng([seed, index])``, so a case does not depend on how many others are
generated or in which order.

Patient size follows the field of view: the body fills 80-90 % of the image width, so the small
preset (128-192 pixels at 0.6-0.9 mm) shows a child-sized abdomen and the full preset (512
pixels) an adult one; organ sizes scale with the body (``SynthCase.scale``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from meddinov3.synth.anatomy import Anatomy, sample_anatomy
from meddinov3.synth.intensity import Scanner, finish_slice, lookup_tables, sample_scanner
from meddinov3.synth.painter import paint_plane
from meddinov3.synth.shapes import Plane

Preset = Literal["small", "full"]
SPACING_XY = (0.6, 0.9)
SPACING_Z = (1.5, 5.0)
SMALL_SIDES = (128, 144, 160, 176, 192)
SMALL_SLICES = (20, 60)
FULL_SIDE = 512
SUBPLANE_MM = 1.0  # partial-volume sampling step along z


@dataclass(frozen=True)
class ScanPlan:
    shape_zyx: tuple[int, int, int]
    spacing_xyz: tuple[float, float, float]
    scale: float  # world mm per adult-anatomy mm
    center_adult_xy: tuple[float, float]  # anatomy point at the image centre
    bottom_adult_z: float  # anatomy height of the first slice centre

    @property
    def origin_xyz(self) -> tuple[float, float, float]:
        z, y, x = self.shape_zyx
        sx, sy, _ = self.spacing_xyz
        return (-(x - 1) / 2 * sx, -(y - 1) / 2 * sy, self.bottom_adult_z * self.scale)


@dataclass
class SynthCase:
    image: np.ndarray  # int16 HU, (Z, Y, X), LPS: +x patient left, +y posterior, +z superior
    label: np.ndarray  # uint8, same shape
    spacing_xyz: tuple[float, float, float]
    origin_xyz: tuple[float, float, float]
    scale: float
    contrast: float


def slice_spacing(rng, coverage_mm: float, n_range: tuple[int, int]) -> float:
    low = max(SPACING_Z[0], coverage_mm / n_range[1])
    high = min(SPACING_Z[1], coverage_mm / n_range[0])
    return float(rng.uniform(low, max(low, high)))


def plan_scan(
    rng: np.random.Generator, anatomy: Anatomy, preset: Preset,
    shape_zyx: tuple[int, int, int] | None = None,
) -> ScanPlan:
    sxy = round(float(rng.uniform(*SPACING_XY)), 4)
    if shape_zyx is not None:
        side = shape_zyx[2]
    elif preset == "small":
        # Prefer at least a 115 mm field of view so the patient is not implausibly small.
        fitting = [n for n in SMALL_SIDES if n * sxy >= 115.0] or [SMALL_SIDES[-1]]
        side = int(rng.choice(fitting))
    else:
        side = FULL_SIDE
    fill = rng.uniform(0.8, 0.9)
    scale = side * sxy * fill / (2 * anatomy.body.half_width)
    bottom, top = anatomy.scan_z
    coverage = (top - bottom) * scale
    if shape_zyx is not None:
        sz = float(rng.uniform(*SPACING_Z))
        n_slices = shape_zyx[0]
        bottom = (bottom + top) / 2 - (n_slices - 1) * sz / scale / 2
        rows = shape_zyx[1]
    else:
        n_range = SMALL_SLICES if preset == "small" else (1, 10_000)
        sz = slice_spacing(rng, coverage, n_range)
        n_slices = int(np.clip(round(coverage / sz), *n_range))
        rows = side
    center = (float(rng.uniform(-0.03, 0.03) * side * sxy / scale),
              float(8.0 + rng.uniform(-0.03, 0.03) * side * sxy / scale))
    return ScanPlan((n_slices, rows, side), (sxy, sxy, round(sz, 4)), float(scale), center,
                    float(bottom))


def plane_axes(plan: ScanPlan) -> tuple[np.ndarray, np.ndarray]:
    """Anatomy coordinates (adult mm) of pixel centres: x per column, y per row."""
    _, rows, cols = plan.shape_zyx
    sx, sy, _ = plan.spacing_xyz
    x = (np.arange(cols) - (cols - 1) / 2) * sx / plan.scale + plan.center_adult_xy[0]
    y = (np.arange(rows) - (rows - 1) / 2) * sy / plan.scale + plan.center_adult_xy[1]
    return x, y


def subplane_offsets(slice_mm: float) -> np.ndarray:
    """Offsets (world mm) sampling one slice's thickness; odd count so the centre is sampled."""
    count = max(1, math.ceil(slice_mm / SUBPLANE_MM))
    count += 1 - count % 2
    return (np.arange(count) - (count - 1) / 2) * (slice_mm / count)


def render(anatomy: Anatomy, plan: ScanPlan, scanner: Scanner, rng: np.random.Generator):
    x, y = plane_axes(plan)
    mean_lut, texture_lut = lookup_tables(scanner)
    offsets = subplane_offsets(plan.spacing_xyz[2])
    centre = len(offsets) // 2
    image = np.empty(plan.shape_zyx, np.int16)
    label = np.empty(plan.shape_zyx, np.uint8)
    for k in range(plan.shape_zyx[0]):
        z_world = (plan.bottom_adult_z * plan.scale) + k * plan.spacing_xyz[2]
        mean_hu = np.zeros(plan.shape_zyx[1:], np.float32)
        texture = np.zeros(plan.shape_zyx[1:], np.float32)
        for j, offset in enumerate(offsets):
            tissue, labels = paint_plane(anatomy, Plane(x, y, (z_world + offset) / plan.scale))
            mean_hu += mean_lut[tissue]
            texture += texture_lut[tissue]
            if j == centre:
                label[k] = labels
        image[k] = finish_slice(mean_hu / len(offsets), texture / len(offsets), scanner,
                                plan.spacing_xyz[0], rng)
    return image, label


@dataclass
class CaseDraw:
    """Everything random about a case, before rendering."""

    anatomy: Anatomy
    plan: ScanPlan
    scanner: Scanner
    rng: np.random.Generator  # continues into rendering (texture and noise)


def draw_case(
    seed: int, index: int, preset: Preset = "small", shape_zyx: tuple[int, int, int] | None = None
) -> CaseDraw:
    rng = np.random.default_rng([seed, index])
    anatomy = sample_anatomy(rng)
    plan = plan_scan(rng, anatomy, preset, shape_zyx)
    return CaseDraw(anatomy, plan, sample_scanner(rng), rng)


def generate_case(
    seed: int, index: int, preset: Preset = "small", shape_zyx: tuple[int, int, int] | None = None
) -> SynthCase:
    draw = draw_case(seed, index, preset, shape_zyx)
    image, label = render(draw.anatomy, draw.plan, draw.scanner, draw.rng)
    plan = draw.plan
    return SynthCase(image, label, plan.spacing_xyz, plan.origin_xyz, plan.scale,
                     draw.scanner.contrast)
