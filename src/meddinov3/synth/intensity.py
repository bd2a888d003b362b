"""Hounsfield units, texture and scanner noise of a synthetic CT.

Values are those of a portal-venous or non-contrast abdominal CT: ``contrast`` in [0, 1] moves
each enhancing tissue from its unenhanced to its portal-venous value (aorta 40 -> ~230 HU,
liver 58 -> ~108 HU, kidney cortex 33 -> ~183 HU). Texture is in-plane smoothed noise with a
per-tissue amplitude; scanner noise is mildly correlated (like a soft reconstruction kernel).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from meddinov3.synth.tissues import Tissue

# tissue: (HU without contrast, HU added at full contrast, texture std in HU)
TISSUE_HU: dict[Tissue, tuple[float, float, float]] = {
    Tissue.AIR: (-1000.0, 0.0, 0.0),
    Tissue.SKIN: (35.0, 10.0, 8.0),
    Tissue.SUBCUTANEOUS_FAT: (-105.0, 0.0, 10.0),
    Tissue.MUSCLE: (48.0, 12.0, 10.0),
    Tissue.VISCERAL_FAT: (-98.0, 0.0, 12.0),
    Tissue.BOWEL: (28.0, 45.0, 18.0),
    Tissue.BOWEL_GAS: (-985.0, 0.0, 10.0),
    Tissue.STOOL: (10.0, 0.0, 70.0),
    Tissue.LUNG: (-860.0, 0.0, 25.0),
    Tissue.LUNG_VESSEL: (40.0, 120.0, 20.0),
    Tissue.HEART_MUSCLE: (48.0, 60.0, 10.0),
    Tissue.HEART_BLOOD: (42.0, 150.0, 8.0),
    Tissue.LIVER: (58.0, 50.0, 7.0),
    Tissue.LIVER_VESSEL: (42.0, 130.0, 8.0),
    Tissue.GALLBLADDER: (8.0, 0.0, 4.0),
    Tissue.SPLEEN: (50.0, 65.0, 7.0),
    Tissue.KIDNEY_CORTEX: (33.0, 150.0, 10.0),
    Tissue.KIDNEY_MEDULLA: (33.0, 95.0, 10.0),
    Tissue.RENAL_SINUS_FAT: (-80.0, 0.0, 15.0),
    Tissue.RENAL_PELVIS: (10.0, 0.0, 5.0),
    Tissue.AORTA: (42.0, 190.0, 6.0),
    Tissue.IVC: (40.0, 120.0, 6.0),
    Tissue.PANCREAS: (45.0, 60.0, 12.0),
    Tissue.STOMACH_WALL: (42.0, 55.0, 8.0),
    Tissue.STOMACH_FLUID: (12.0, 0.0, 5.0),
    Tissue.STOMACH_GAS: (-990.0, 0.0, 5.0),
    Tissue.BONE_CORTICAL: (800.0, 0.0, 90.0),
    Tissue.BONE_CANCELLOUS: (240.0, 0.0, 55.0),
    Tissue.DISC: (85.0, 0.0, 10.0),
    Tissue.SPINAL_CANAL: (22.0, 0.0, 6.0),
    Tissue.RIB: (520.0, 0.0, 80.0),
    Tissue.TABLE_SHELL: (180.0, 0.0, 10.0),
    Tissue.TABLE_FOAM: (-850.0, 0.0, 10.0),
}


@dataclass(frozen=True)
class Scanner:
    contrast: float  # 0 = non-contrast, 1 = portal venous
    noise_hu: float  # std of the scanner noise
    texture_mm: float  # correlation length of the tissue texture
    psf_px: float  # in-plane blur of the reconstruction, pixels
    tissue_offsets: tuple[float, ...]  # per-tissue HU shift of this patient


def sample_scanner(rng: np.random.Generator) -> Scanner:
    contrast = 0.0 if rng.random() < 0.25 else float(rng.uniform(0.6, 1.0))
    return Scanner(
        contrast=contrast,
        noise_hu=float(rng.uniform(10.0, 20.0)),
        texture_mm=float(rng.uniform(1.0, 2.0)),
        psf_px=float(rng.uniform(0.5, 0.8)),
        tissue_offsets=tuple(rng.uniform(-6.0, 6.0, len(Tissue)).round(2)),
    )


def lookup_tables(scanner: Scanner) -> tuple[np.ndarray, np.ndarray]:
    """(mean HU, texture std) indexed by tissue id."""
    mean = np.zeros(len(Tissue), np.float32)
    texture = np.zeros(len(Tissue), np.float32)
    for tissue, (plain, enhancement, spread) in TISSUE_HU.items():
        offset = 0.0 if tissue in (Tissue.AIR, Tissue.BOWEL_GAS, Tissue.STOMACH_GAS) else \
            scanner.tissue_offsets[tissue]
        mean[tissue] = plain + enhancement * scanner.contrast + offset
        texture[tissue] = spread
    return mean, texture


def unit_noise(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """In-plane Gaussian-correlated noise, rescaled to unit standard deviation."""
    field = gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_px)
    return field / max(float(field.std()), 1e-6)


def finish_slice(
    mean_hu: np.ndarray, texture_std: np.ndarray, scanner: Scanner, spacing_mm: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Mean HU + tissue texture -> reconstruction blur -> scanner noise -> int16."""
    texture = unit_noise(rng, mean_hu.shape, scanner.texture_mm / spacing_mm)
    image = gaussian_filter(mean_hu + texture_std * texture, scanner.psf_px)
    image += scanner.noise_hu * unit_noise(rng, mean_hu.shape, 0.6)
    return np.clip(np.rint(image), -1024, 3071).astype(np.int16)
