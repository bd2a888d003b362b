"""Per-case anatomy of a synthetic upper abdomen, in adult millimetres (LPS axes).

Every structure is a parametric shape whose position, size, orientation and surface deformation
are drawn per case. The frame: x toward the patient's left, y toward posterior, z superior;
z = 0 is the L1/L2 disc, the body axis is x = 0. A case is rendered at any patient size by
scaling these coordinates (see ``case.py``).

Typical adult values (before per-case variation): body 300 x 215 mm; liver ~1.5 L in the right
upper quadrant up to the right diaphragm dome; spleen ~0.2 L posterolateral left; kidneys
beside the spine from T12 to L3, hilum anteromedial; aorta ~22 mm wide, anterior-left of the
vertebral bodies; stomach in the left upper quadrant, anterior, with gas above fluid (supine).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from meddinov3.synth.fields import SmoothField
from meddinov3.synth.shapes import Blob, Tube

LEVEL_HEIGHT = 36.0  # one vertebra + disc, mm
DISC_HEIGHT = 8.0


@dataclass
class Body:
    half_width: float
    half_depth_front: float
    half_depth_back: float
    exponent: float  # superellipse: >2 squares the outline a little, as a supine body
    center_y: float
    fat: float  # subcutaneous fat thickness, mm
    fat_back_extra: float  # relative extra fat posterolaterally
    muscle: float  # abdominal / chest wall muscle thickness, mm
    wobble: SmoothField
    fat_field: SmoothField

    @property
    def back_y(self) -> float:
        return self.center_y + self.half_depth_back


@dataclass
class Spine:
    body_y: float  # vertebral body centre
    body_radii: tuple[float, float]
    canal_y: float
    canal_radius: float
    disc_phase: float  # z of a disc centre
    spinous_end_y: float


@dataclass
class Ribs:
    posterior_z: list[float]  # height of each rib at the spine
    reach: list[float]  # how far round the body each rib runs (0 = back, 1 = front midline)
    slope: float  # mm the rib descends from back to front midline
    half_height: float = 4.0


@dataclass
class Diaphragm:
    right_apex: float
    left_apex: float
    center_y: float

    def height(self, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
        """Height of the diaphragm over each (x, y): two domes, lower posteriorly (recesses)."""
        mean, half = (self.right_apex + self.left_apex) / 2, (self.right_apex - self.left_apex) / 2
        apex = mean - half * np.tanh(xx / 90.0)
        lateral = 28.0 * ((np.abs(xx) - 55.0) / 60.0) ** 2
        posterior = 40.0 * np.clip((yy - self.center_y + 10.0) / 110.0, 0.0, 1.0) ** 1.3
        return apex - lateral - posterior


@dataclass
class Kidney:
    outer: Blob
    sinus: Blob
    pelvis: Blob
    label_left: bool


@dataclass
class Anatomy:
    body: Body
    spine: Spine
    ribs: Ribs
    diaphragm: Diaphragm
    heart: Blob
    liver: list[Blob]
    gallbladder: Blob
    spleen: Blob
    stomach: list[Blob]
    gas_level_y: float  # stomach gas lies anterior (smaller y) to this plane
    pancreas: list[Blob]
    kidneys: list[Kidney]
    aorta: Tube
    ivc: Tube
    colon: list[Tube]
    paraspinal: list[Tube]
    psoas: list[Tube]
    bowel_top: float
    liver_vessels: tuple[SmoothField, SmoothField]
    lung_vessels: tuple[SmoothField, SmoothField]
    bowel_loops: SmoothField
    bowel_gas: SmoothField
    stool: SmoothField
    scan_z: tuple[float, float]  # (bottom, top) of the scanned range


def jitter(rng: np.random.Generator, spread: float) -> float:
    return float(rng.uniform(-spread, spread))


def deform(rng: np.random.Generator) -> SmoothField:
    # Wavelengths in units of the organ's radius: 1.5-4 gives lobulated, not noisy, outlines.
    return SmoothField.draw(rng, modes=8, wavelength=(1.5, 4.0))


def blob(rng, center, radii, yaw=0.0, pitch=0.0, bump=0.08, spread=6.0, size=0.1) -> Blob:
    center = np.asarray(center, float) + rng.uniform(-spread, spread, 3)
    radii = np.asarray(radii, float) * rng.uniform(1 - size, 1 + size, 3)
    return Blob(center, radii, yaw + jitter(rng, 0.15), pitch + jitter(rng, 0.1), bump,
                deform(rng))


def sample_body(rng: np.random.Generator) -> Body:
    size = rng.uniform(0.9, 1.1)
    return Body(
        half_width=150.0 * size * rng.uniform(0.95, 1.05),
        half_depth_front=115.0 * size * rng.uniform(0.9, 1.1),
        half_depth_back=100.0 * size,
        exponent=rng.uniform(2.3, 2.9),
        center_y=0.0,
        fat=rng.uniform(8.0, 28.0),
        fat_back_extra=rng.uniform(0.1, 0.5),
        muscle=rng.uniform(8.0, 13.0),
        wobble=SmoothField.draw(rng, 6, (1.5, 4.0)),
        fat_field=SmoothField.draw(rng, 6, (0.8, 2.5)),
    )


def sample_spine(rng: np.random.Generator, body: Body) -> Spine:
    body_y = body.back_y - body.fat - 62.0 + jitter(rng, 4)
    canal_y = body_y + 31.0
    return Spine(
        body_y=body_y,
        body_radii=(21.0 + jitter(rng, 2), 17.0 + jitter(rng, 2)),
        canal_y=canal_y,
        canal_radius=9.0 + jitter(rng, 1),
        disc_phase=jitter(rng, 6),
        spinous_end_y=min(body.back_y - body.fat - 6.0, canal_y + 38.0),
    )


def sample_ribs(rng: np.random.Generator) -> Ribs:
    # Ribs 9-12 at the thoracolumbar junction; the lower ones are shorter (floating ribs).
    top = 162.0 + jitter(rng, 8)
    return Ribs(
        posterior_z=[top - LEVEL_HEIGHT * i for i in range(4)],
        reach=[0.9, 0.85, 0.6, 0.4],
        slope=260.0 + jitter(rng, 20),
    )


def sample_kidney(rng: np.random.Generator, spine: Spine, left: bool) -> Kidney:
    side = 1.0 if left else -1.0
    z = (-16.0 if left else -30.0) + jitter(rng, 8)
    center = np.array([side * (70.0 + jitter(rng, 5)), spine.body_y + 12.0 + jitter(rng, 5), z])
    radii = np.array([27.0, 31.0, 52.0]) * rng.uniform(0.9, 1.1, 3)
    yaw = side * (0.5 + jitter(rng, 0.15))
    outer = Blob(center, radii, yaw, side * 0.12, 0.05, deform(rng))
    hilum = np.array([-side * 0.85, -0.55, 0.0])  # medial and anterior
    sinus = Blob(center + hilum * radii * 0.55, radii * np.array([0.42, 0.4, 0.55]), yaw, 0.0,
                 0.1, deform(rng))
    pelvis = Blob(center + hilum * radii * 0.7, radii * np.array([0.22, 0.2, 0.25]), yaw, 0.0,
                  0.1, deform(rng))
    return Kidney(outer, sinus, pelvis, label_left=left)


def sample_vessels(rng: np.random.Generator, spine: Spine):
    front = spine.body_y - spine.body_radii[1] - 2.0
    r_aorta = rng.uniform(9.5, 13.0)
    ax = 14.0 + jitter(rng, 4)
    z = np.array([-200.0, 40.0, 90.0, 200.0])
    aorta = Tube(z, np.array([[ax, front - r_aorta], [ax + 2, front - r_aorta - 2],
                              [ax + 8, front - r_aorta + 6], [ax + 14, front - r_aorta + 14]]),
                 np.full(4, r_aorta))
    iy = front - 10.0 + jitter(rng, 3)
    ivc = Tube(np.array([-200.0, 40.0, 95.0, 115.0]),
               np.array([[-22.0, iy], [-24.0, iy - 4], [-20.0, iy - 12], [-15.0, iy - 20]]),
               np.full(4, rng.uniform(10.0, 13.0)), squash=0.75)
    return aorta, ivc


def sample_muscles(rng: np.random.Generator, spine: Spine) -> tuple[list[Tube], list[Tube]]:
    z = np.array([-200.0, 200.0])
    paraspinal = [
        Tube(z, np.array([[s * 31.0, spine.canal_y + 16.0]] * 2),
             np.full(2, 25.0 + jitter(rng, 3)), squash=0.8)
        for s in (-1.0, 1.0)
    ]
    zp = np.array([-200.0, -110.0, -10.0, 10.0])
    psoas = [
        Tube(zp, np.array([[s * 48.0, spine.body_y - 4.0], [s * 45.0, spine.body_y],
                           [s * 30.0, spine.body_y + 4.0], [s * 28.0, spine.body_y + 4.0]]),
             np.array([26.0, 22.0, 6.0, 2.0]) * rng.uniform(0.85, 1.15), squash=0.9)
        for s in (-1.0, 1.0)
    ]
    return paraspinal, psoas


def sample_gut(rng: np.random.Generator, body: Body):
    stomach = [
        blob(rng, (46.0, -30.0, 56.0), (40.0, 34.0, 46.0), yaw=0.5, pitch=-0.3, bump=0.12),
        blob(rng, (8.0, -62.0, 28.0), (34.0, 22.0, 24.0), yaw=-0.2, bump=0.12),
    ]
    gas_level = -38.0 + rng.uniform(-14.0, 6.0)
    path = np.array([[-30.0, -8.0, -8.0], [-5.0, -24.0, -2.0], [25.0, -20.0, 4.0],
                     [50.0, -2.0, 10.0], [66.0, 14.0, 16.0]])
    radii = np.array([15.0, 11.0, 10.0, 9.5, 8.5])
    shift = rng.uniform(-6.0, 6.0, 3)
    pancreas = [
        Blob(path[i] + shift, np.array([radii[i], radii[i] * 0.9, radii[i] * 0.7]), 0.0, 0.0,
             0.15, deform(rng))
        for i in range(len(path))
    ]
    flank = body.half_width - body.fat - body.muscle - 30.0
    colon = [
        Tube(np.array([-200.0, 5.0 + jitter(rng, 10)]), np.array([[s * flank, -5.0]] * 2),
             np.full(2, rng.uniform(17.0, 24.0)))
        for s in (-1.0, 1.0)
    ]
    return stomach, gas_level, pancreas, colon


def sample_anatomy(rng: np.random.Generator) -> Anatomy:
    body = sample_body(rng)
    spine = sample_spine(rng, body)
    aorta, ivc = sample_vessels(rng, spine)
    paraspinal, psoas = sample_muscles(rng, spine)
    stomach, gas_level, pancreas, colon = sample_gut(rng, body)
    right_apex = 120.0 + jitter(rng, 8)
    return Anatomy(
        body=body,
        spine=spine,
        ribs=sample_ribs(rng),
        diaphragm=Diaphragm(right_apex, right_apex - rng.uniform(8.0, 20.0), body.center_y),
        heart=blob(rng, (22.0, -28.0, 150.0), (68.0, 55.0, 55.0), yaw=0.3, bump=0.05),
        liver=[
            blob(rng, (-62.0, -5.0, 62.0), (72.0, 86.0, 70.0), bump=0.08),
            blob(rng, (12.0, -52.0, 78.0), (58.0, 30.0, 38.0), yaw=-0.2, bump=0.1),
        ],
        gallbladder=blob(rng, (-38.0, -58.0, 22.0), (15.0, 17.0, 32.0), pitch=0.5, bump=0.05,
                         spread=4.0),
        spleen=blob(rng, (74.0, 36.0, 60.0), (27.0, 56.0, 50.0), yaw=-0.6, bump=0.1),
        stomach=stomach,
        gas_level_y=gas_level,
        pancreas=pancreas,
        kidneys=[sample_kidney(rng, spine, left=True), sample_kidney(rng, spine, left=False)],
        aorta=aorta,
        ivc=ivc,
        colon=colon,
        paraspinal=paraspinal,
        psoas=psoas,
        bowel_top=30.0 + jitter(rng, 10),
        liver_vessels=(SmoothField.draw(rng, 10, (25.0, 60.0)),
                       SmoothField.draw(rng, 10, (25.0, 60.0))),
        lung_vessels=(SmoothField.draw(rng, 10, (20.0, 50.0)),
                      SmoothField.draw(rng, 10, (20.0, 50.0))),
        bowel_loops=SmoothField.draw(rng, 14, (25.0, 50.0)),
        bowel_gas=SmoothField.draw(rng, 10, (12.0, 30.0)),
        stool=SmoothField.draw(rng, 10, (4.0, 10.0)),
        scan_z=(-100.0 + jitter(rng, 8), 124.0 + jitter(rng, 10)),
    )
