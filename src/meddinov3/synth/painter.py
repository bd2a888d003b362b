"""Paint one axial plane of an :class:`Anatomy` into tissue classes and labels.

Painter's algorithm: body layers first, then the cavity contents, then organs from the most
to the least "underneath" (later paint wins), so contact surfaces between organs are where a
later organ starts. Organs stay inside the body cavity and on their side of the diaphragm.
"""

from __future__ import annotations

import numpy as np

from meddinov3.synth.anatomy import DISC_HEIGHT, LEVEL_HEIGHT, Anatomy, Body, Kidney
from meddinov3.synth.fields import tubes
from meddinov3.synth.shapes import Plane, Region
from meddinov3.synth.tissues import LABELS, Tissue

DIAPHRAGM_HALF_THICKNESS = 2.0
SKIN = 2.5
BODY_FIELD_UNIT = 100.0
MEDIASTINUM_X, MEDIASTINUM_HALF_WIDTH = 8.0, 28.0  # mm; body outline and fat vary over tens of centimetres


class Canvas:
    """Tissue and label images of one plane, plus per-plane geometry shared by the painters."""

    def __init__(self, plane: Plane, anatomy: Anatomy):
        self.plane = plane
        self.tissue = np.full(plane.shape, Tissue.AIR, np.uint8)
        self.label = np.zeros(plane.shape, np.uint8)
        self.xx, self.yy = np.meshgrid(plane.x, plane.y)
        body = anatomy.body
        self.depth = body_depth(body, plane, self.xx, self.yy)
        self.fat = fat_thickness(body, plane, self.xx, self.yy)
        self.cavity = self.depth > self.fat + body.muscle
        self.dome = anatomy.diaphragm.height(self.xx, self.yy)
        self.abdomen = self.cavity & (plane.z < self.dome - DIAPHRAGM_HALF_THICKNESS)
        self.thorax = self.cavity & (plane.z > self.dome + DIAPHRAGM_HALF_THICKNESS)

    def paint(self, mask: np.ndarray, tissue: Tissue, label: int = 0) -> None:
        self.tissue[mask] = tissue
        self.label[mask] = label

    def paint_region(self, region: Region | None, tissue: Tissue, label: int = 0,
                     allowed: np.ndarray | None = None) -> None:
        if region is None:
            return
        mask = region.mask
        if allowed is not None:
            mask = mask & allowed[region.rows, region.cols]
        self.tissue[region.rows, region.cols][mask] = tissue
        self.label[region.rows, region.cols][mask] = label

    def axes(self, region: Region) -> tuple[np.ndarray, np.ndarray]:
        return self.plane.x[region.cols], self.plane.y[region.rows]


def body_depth(body: Body, plane: Plane, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """Approximate distance (mm) inward from the skin; negative outside the body."""
    dy = yy - body.center_y
    half_depth = np.where(dy > 0, body.half_depth_back, body.half_depth_front)
    p = body.exponent
    r = (np.abs(xx / body.half_width) ** p + np.abs(dy / half_depth) ** p) ** (1.0 / p)
    r = r * (1.0 + 0.03 * body.wobble.scaled(BODY_FIELD_UNIT).grid(plane.x, plane.y, plane.z))
    return np.hypot(xx, dy) * (1.0 - r) / np.maximum(r, 1e-6)


def fat_thickness(body: Body, plane: Plane, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    posterior = np.clip((yy - body.center_y) / body.half_depth_back, 0.0, 1.0)
    lateral = np.abs(xx) / body.half_width
    field = body.fat_field.scaled(BODY_FIELD_UNIT).grid(plane.x, plane.y, plane.z)
    extra = 1.0 + body.fat_back_extra * np.maximum(posterior, lateral**2)
    return np.maximum(3.0, body.fat * (1.0 + 0.35 * field) * extra)


def paint_table(canvas: Canvas, body: Body) -> None:
    # A cradle: the table top curves up towards the patient's sides.
    top = body.back_y + 4.0 - 0.0008 * canvas.xx**2 * (150.0 / body.half_width)
    under = canvas.yy - top
    lateral = np.abs(canvas.xx) < body.half_width * 1.25
    canvas.paint(lateral & (under > 0) & (under < 24.0), Tissue.TABLE_FOAM)
    shell = lateral & (((under > 0) & (under < 3.0)) | ((under > 21.0) & (under < 24.0)))
    canvas.paint(shell, Tissue.TABLE_SHELL)


def paint_body(canvas: Canvas, body: Body) -> None:
    canvas.paint(canvas.depth > 0, Tissue.SKIN)
    canvas.paint(canvas.depth > SKIN, Tissue.SUBCUTANEOUS_FAT)
    canvas.paint(canvas.depth > canvas.fat, Tissue.MUSCLE)
    canvas.paint(canvas.cavity, Tissue.VISCERAL_FAT)


def paint_thorax_and_bowel(canvas: Canvas, anatomy: Anatomy) -> None:
    """Diaphragm muscle, lungs (with vessels) above it, bowel loops below."""
    plane = canvas.plane
    canvas.paint(canvas.cavity & (plane.z > canvas.dome - DIAPHRAGM_HALF_THICKNESS), Tissue.MUSCLE)
    # The mediastinum (fat round the heart, aorta and oesophagus) separates the two lungs.
    mediastinum = canvas.thorax & (np.abs(canvas.xx - MEDIASTINUM_X) < MEDIASTINUM_HALF_WIDTH)
    lungs = canvas.thorax & ~mediastinum
    canvas.paint(mediastinum, Tissue.VISCERAL_FAT)
    canvas.paint(lungs, Tissue.LUNG)
    if lungs.any():
        vessel = tubes(*anatomy.lung_vessels, plane.x, plane.y, plane.z, width=0.06)
        canvas.paint(lungs & vessel, Tissue.LUNG_VESSEL)
    if plane.z < anatomy.bowel_top:
        front = canvas.abdomen & (canvas.yy < anatomy.spine.body_y - 5.0)
        loops = front & (anatomy.bowel_loops.grid(plane.x, plane.y, plane.z) > -0.2)
        canvas.paint(loops, Tissue.BOWEL)
        gas = anatomy.bowel_gas.grid(plane.x, plane.y, plane.z) > 1.45
        canvas.paint(loops & gas, Tissue.BOWEL_GAS)


def paint_colon(canvas: Canvas, anatomy: Anatomy) -> None:
    z = canvas.plane.z
    for tube in anatomy.colon:
        region = tube.region(canvas.plane)
        if region is None:
            continue
        canvas.paint_region(region, Tissue.BOWEL, allowed=canvas.abdomen)
        stool = anatomy.stool.grid(*canvas.axes(region), z)
        lumen = Region(region.rows, region.cols, region.mask & (stool > -0.9))
        canvas.paint_region(lumen, Tissue.STOOL, allowed=canvas.abdomen)
        gas = Region(region.rows, region.cols, lumen.mask & (stool > 0.4))
        canvas.paint_region(gas, Tissue.BOWEL_GAS, allowed=canvas.abdomen)


def paint_ribs(canvas: Canvas, anatomy: Anatomy) -> None:
    body, ribs, z = anatomy.body, anatomy.ribs, canvas.plane.z
    band = (canvas.depth > canvas.fat + 1.5) & (canvas.depth < canvas.fat + 8.5)
    dy = canvas.yy - body.center_y
    # 0 at the back midline, 1 at the front midline.
    around = np.arccos(np.clip(dy / np.maximum(np.hypot(canvas.xx, dy), 1e-6), -1, 1)) / np.pi
    for height, reach in zip(ribs.posterior_z, ribs.reach):
        if not height - ribs.slope * reach - 10 < z < height + 10:
            continue
        crossing = np.abs(z - (height - ribs.slope * around)) < ribs.half_height
        canvas.paint(band & crossing & (around < reach) & (around > 0.12), Tissue.RIB)


def paint_muscles(canvas: Canvas, anatomy: Anatomy) -> None:
    for tube in (*anatomy.paraspinal, *anatomy.psoas):
        canvas.paint_region(tube.region(canvas.plane), Tissue.MUSCLE)


def paint_heart(canvas: Canvas, anatomy: Anatomy) -> None:
    heart = anatomy.heart
    canvas.paint_region(heart.region(canvas.plane), Tissue.HEART_MUSCLE, allowed=canvas.thorax)
    canvas.paint_region(heart.region(canvas.plane, 0.75), Tissue.HEART_BLOOD,
                        allowed=canvas.thorax)


def paint_liver(canvas: Canvas, anatomy: Anatomy) -> None:
    label = LABELS["liver"]
    regions = [lobe.region(canvas.plane) for lobe in anatomy.liver]
    for region in regions:
        canvas.paint_region(region, Tissue.LIVER, label, allowed=canvas.abdomen)
    for region in regions:
        if region is None:
            continue
        vessel = tubes(*anatomy.liver_vessels, *canvas.axes(region), canvas.plane.z, width=0.11)
        inside = canvas.tissue[region.rows, region.cols] == Tissue.LIVER
        canvas.paint_region(Region(region.rows, region.cols, region.mask & vessel & inside),
                            Tissue.LIVER_VESSEL, label)
    canvas.paint_region(anatomy.gallbladder.region(canvas.plane), Tissue.GALLBLADDER,
                        allowed=canvas.abdomen)


def paint_stomach(canvas: Canvas, anatomy: Anatomy) -> None:
    label = LABELS["stomach"]
    for part in anatomy.stomach:
        wall = part.region(canvas.plane)
        if wall is None:
            continue
        canvas.paint_region(wall, Tissue.STOMACH_WALL, label, allowed=canvas.abdomen)
        lumen = part.region(canvas.plane, 1.0 - 4.0 / part.radii.min())
        if lumen is None:
            continue
        gas = canvas.axes(lumen)[1][:, None] < anatomy.gas_level_y
        for contents, tissue in ((gas, Tissue.STOMACH_GAS), (~gas, Tissue.STOMACH_FLUID)):
            canvas.paint_region(Region(lumen.rows, lumen.cols, lumen.mask & contents), tissue,
                                label, allowed=canvas.abdomen)


def paint_kidney(canvas: Canvas, kidney: Kidney) -> None:
    label = LABELS["kidney_left" if kidney.label_left else "kidney_right"]
    outer = kidney.outer.region(canvas.plane)
    if outer is None:
        return
    canvas.paint_region(outer, Tissue.KIDNEY_CORTEX, label, allowed=canvas.abdomen)
    canvas.paint_region(kidney.outer.region(canvas.plane, 0.8), Tissue.KIDNEY_MEDULLA, label,
                        allowed=canvas.abdomen)
    for part, tissue in ((kidney.sinus, Tissue.RENAL_SINUS_FAT),
                         (kidney.pelvis, Tissue.RENAL_PELVIS)):
        region = part.region(canvas.plane)
        if region is not None:
            canvas.paint_region(region.within(outer), tissue, label, allowed=canvas.abdomen)


def paint_organs(canvas: Canvas, anatomy: Anatomy) -> None:
    plane = canvas.plane
    paint_liver(canvas, anatomy)
    canvas.paint_region(anatomy.spleen.region(plane), Tissue.SPLEEN, LABELS["spleen"],
                        allowed=canvas.abdomen)
    for part in anatomy.pancreas:
        canvas.paint_region(part.region(plane), Tissue.PANCREAS, allowed=canvas.abdomen)
    paint_stomach(canvas, anatomy)
    for kidney in anatomy.kidneys:
        paint_kidney(canvas, kidney)


def paint_spine(canvas: Canvas, anatomy: Anatomy) -> None:
    spine, z = anatomy.spine, canvas.plane.z
    xx, yy = canvas.xx, canvas.yy
    label = LABELS["vertebrae"]
    phase = (z - spine.disc_phase) % LEVEL_HEIGHT  # 0 at a disc centre
    in_disc = phase < DISC_HEIGHT / 2 or phase > LEVEL_HEIGHT - DISC_HEIGHT / 2
    rx, ry = spine.body_radii
    vertebral_body = ((xx / rx) ** 2 + ((yy - spine.body_y) / ry) ** 2) < 1.0
    if in_disc:
        canvas.paint(vertebral_body, Tissue.DISC)
    else:
        canvas.paint(vertebral_body, Tissue.BONE_CORTICAL, label)
        core = ((xx / (rx - 2.5)) ** 2 + ((yy - spine.body_y) / (ry - 2.5)) ** 2) < 1.0
        canvas.paint(core, Tissue.BONE_CANCELLOUS, label)
    canal_distance = np.hypot(xx, yy - spine.canal_y)
    # Pedicles and laminae: a bony ring round the canal, open towards the vertebral body.
    arch = (canal_distance < spine.canal_radius + 5.0) & (yy > spine.body_y + ry - 3.0)
    from_mid = abs(phase - LEVEL_HEIGHT / 2)
    if from_mid < LEVEL_HEIGHT / 2 - DISC_HEIGHT / 2 - 3.0:
        arch |= (np.abs(xx) < 3.5) & (yy > spine.canal_y) & (yy < spine.spinous_end_y)
    if from_mid < 4.0:
        lateral = (np.abs(xx) > spine.canal_radius) & (np.abs(xx) < spine.canal_radius + 26.0)
        arch |= lateral & (np.abs(yy - spine.canal_y + 2.0 - 0.25 * np.abs(xx)) < 3.5)
    canvas.paint(arch, Tissue.BONE_CORTICAL, label)
    canvas.paint(canal_distance < spine.canal_radius, Tissue.SPINAL_CANAL)


def paint_plane(anatomy: Anatomy, plane: Plane) -> tuple[np.ndarray, np.ndarray]:
    """Tissue classes and labels (both uint8, rows x cols) of one axial plane."""
    canvas = Canvas(plane, anatomy)
    paint_table(canvas, anatomy.body)
    paint_body(canvas, anatomy.body)
    paint_thorax_and_bowel(canvas, anatomy)
    paint_colon(canvas, anatomy)
    paint_ribs(canvas, anatomy)
    paint_muscles(canvas, anatomy)
    paint_heart(canvas, anatomy)
    paint_organs(canvas, anatomy)
    canvas.paint_region(anatomy.ivc.region(plane), Tissue.IVC)
    canvas.paint_region(anatomy.aorta.region(plane), Tissue.AORTA, LABELS["aorta"])
    paint_spine(canvas, anatomy)
    return canvas.tissue, canvas.label
