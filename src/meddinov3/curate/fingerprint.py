"""Content fingerprints of axial slices: the same voxel data gives the same digest, whatever the file.

A volume is fingerprinted as curation reads it: reoriented with DICOMOrient to LPS (so a
flipped or permuted storage order reads the same), axis 0 the axial slices. Each slice's digest
is a hash of its shape and of its values as little-endian float32 minus the slice's minimum:
- int16, int32, uint16 or float32 storage of integer HU all give the same float32 values
  (exact up to 2^24), float64 storage of float32 data too;
- subtracting the minimum makes an offset storage (HU + 1024 in uint16 without a rescale
  intercept) read the same; -0.0 and 0.0 are made equal;
- file name, format (.nii.gz, .mha, .nrrd, DICOM), compression and header fields (spacing,
  origin) play no part.
Per-slice digests also find a copy cut to fewer slices. Slices with few distinct values (blank
or masked slices, e.g. air inside a scanner's circular field of view) are alike between
different scans, so they get no digest and never count as a match.
"""

from __future__ import annotations

import hashlib

import numpy as np

DIGEST_BYTES = 8  # 64 bits: a chance collision among 10^7 x 10^6 slice pairs is ~5e-7
CHUNK_SLICES = 16  # bounds the float32 copy to 16 slices
# A slice is informative when every 4th voxel per axis shows at least this many distinct values.
SAMPLE_STRIDE = 4
MIN_DISTINCT_VALUES = 16


def canonical_values(chunk: np.ndarray) -> np.ndarray:
    """(k, Y, X) slices as little-endian float32, each minus its minimum (+0.0 turns -0.0 into 0.0)."""
    values = np.array(chunk, dtype="<f4")
    values -= values.min(axis=(1, 2), keepdims=True)
    values += np.float32(0.0)
    return values


def is_informative(plane: np.ndarray) -> bool:
    sample = plane[::SAMPLE_STRIDE, ::SAMPLE_STRIDE]
    return np.unique(sample).size >= MIN_DISTINCT_VALUES


def plane_digest(plane: np.ndarray) -> str:
    digest = hashlib.blake2b(digest_size=DIGEST_BYTES)
    digest.update(np.asarray(plane.shape, dtype="<i8").tobytes())
    digest.update(np.ascontiguousarray(plane).data)
    return digest.hexdigest()


def slice_digests(voxels: np.ndarray) -> list[str | None]:
    """One digest per slice of a (Z, Y, X) LPS volume; None for a slice with too little in it."""
    if voxels.ndim != 3:
        raise ValueError(f"expected a (Z, Y, X) volume, got shape {voxels.shape}")
    digests: list[str | None] = []
    for start in range(0, voxels.shape[0], CHUNK_SLICES):
        for plane in canonical_values(voxels[start : start + CHUNK_SLICES]):
            digests.append(plane_digest(plane) if is_informative(plane) else None)
    return digests
