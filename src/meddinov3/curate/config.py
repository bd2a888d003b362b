"""Geometry and screening settings of a curated corpus, as plain data.

The geometry (spacing, size, pad value) is stored in ``corpus.json``; a later run into the same
corpus must use the same geometry, so slices of one corpus are always comparable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# Paper (CT-3M): "resampled to an in-plane spacing of 0.45 mm and 0.45 mm, and then resized to
# uniform resolution 256 x 256".
PAPER_SPACING_MM = 0.45
PAPER_SIZE = 256
AIR_HU = -1000.0
FORMAT_VERSION = 1


@dataclass(frozen=True)
class CurateConfig:
    spacing_mm: float = PAPER_SPACING_MM
    size: int = PAPER_SIZE
    # Fills the margin when a non-square field of view is padded to a square before resizing.
    pad_value: float = AIR_HU
    # Reject volumes whose intensities do not look like Hounsfield units (see screening.py).
    check_ct: bool = True
    # Slices interpolated together; bounds the float32 working memory of one worker.
    chunk_slices: int = 16
    # nnU-Net raw dataset folders whose cases (imagesTr, imagesTs) are left out (see exclusion.py).
    exclude: tuple[str, ...] = ()

    def geometry(self) -> dict[str, Any]:
        """The part of the config that defines what a stored slice means."""
        return {
            "format_version": FORMAT_VERSION,
            "spacing_mm": self.spacing_mm,
            "size": self.size,
            "pad_value": self.pad_value,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
