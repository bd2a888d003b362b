"""Whether an image's geometry can be trusted: the NIfTI header's own fields, SimpleITK's reading
of them, and the voxel spacing of any image.

SimpleITK (and with it nnU-Net) reads a NIfTI file's spacing from `pixdim` and its direction
from the qform, falling back from the sform when the sform's scales disagree with `pixdim`;
other tools (nibabel, most viewers) trust the sform. Where these readings part, a label map or a
corpus slice silently gets another geometry than the scan: pixdim 0 reads as 1 mm, a negative
pixdim mirrors the axis (with only a warning from ITK), a qform and sform that disagree are two
geometries. Such a header is refused here, naming the field and what each reading says; so is a
voxel spacing no CT or MR scan has (metres or micrometres taken for millimetres), which would
otherwise resample a volume into hundreds of GiB.
"""

from __future__ import annotations

import gzip
import io
import math
import struct
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    import SimpleITK as sitk

# CT and MR voxels: thin-slice CT ~0.2 mm, micro-CT of specimens ~10 um; thick slices <= 10 mm.
PLAUSIBLE_SPACING_MM = (0.01, 50.0)
# Two transforms are one geometry when they agree to float32 rounding of a NIfTI header (and
# the orthogonalisation of a qform), far below any voxel's size.
_MATRIX_RTOL = 1e-4
_ORIGIN_ATOL_MM = 1e-3
_ORIGIN_RTOL = 1e-5
# ITK's axes are LPS, NIfTI's RAS.
_LPS_TO_RAS = np.array([-1.0, -1.0, 1.0])
_NIFTI_SIZES = {348: "Nifti1Header", 540: "Nifti2Header"}


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{float(v) + 0.0:.4g}" for v in values) + ")"


def spacing_problem(spacing: Sequence[float]) -> str | None:
    """Why a voxel spacing (mm) is not one of a CT or MR scan, or None."""
    low, high = PLAUSIBLE_SPACING_MM
    if all(math.isfinite(s) and low <= s <= high for s in spacing):
        return None
    return (
        f"implausible voxel spacing {_fmt(spacing)} mm: CT and MR voxels measure {low:g} to {high:g} mm"
        " (a header in metres or micrometres?)"
    )


def read_nifti_header(path: Path):
    """The NIfTI-1 or -2 header of `path` (gzip-compressed or not, whatever its name) as stored
    (nibabel's, without its repairs), or None when the file does not start with one."""
    import nibabel

    with open(path, "rb") as stream:
        compressed = stream.read(2) == b"\x1f\x8b"
    try:
        with (gzip.open if compressed else open)(path, "rb") as stream:
            raw = stream.read(540)
    except (OSError, EOFError, zlib.error):
        return None
    if len(raw) < 348:
        return None
    for order in "<>":
        kind = _NIFTI_SIZES.get(struct.unpack(f"{order}i", raw[:4])[0])
        if kind is not None:
            return getattr(nibabel, kind).from_fileobj(io.BytesIO(raw), check=False)
    return None


def _spatial_axes(header) -> int:
    return max(1, min(int(header["dim"][0]), 3))


def _sform(header) -> np.ndarray | None:
    """The sform, or None when it is not set: code 0, or a code with all-zero rows (some writers
    set the code and never the rows; every reader then goes by the qform or pixdim)."""
    if int(header["sform_code"]) <= 0:
        return None
    sform = np.asarray(header.get_sform(), dtype=float)
    return None if not np.any(sform[:3]) else sform


def _usable(affine: np.ndarray, n: int) -> bool:
    return bool(np.all(np.isfinite(affine))) and abs(np.linalg.det(affine[:n, :n])) > 0


def _same(a: np.ndarray, b: np.ndarray, n: int) -> bool:
    scale = float(np.abs(b[:n, :n]).max())
    return np.allclose(a[:n, :n], b[:n, :n], rtol=0, atol=_MATRIX_RTOL * scale) and np.allclose(
        a[:n, 3], b[:n, 3], rtol=_ORIGIN_RTOL, atol=_ORIGIN_ATOL_MM
    )


def _describe(affine: np.ndarray, n: int) -> str:
    zooms = np.linalg.norm(affine[:n, :n], axis=0)
    axes = (affine[:n, :n] / zooms).T.ravel()
    return f"spacing {_fmt(zooms)} mm, axes {_fmt(np.round(axes, 3) + 0.0)}, origin {_fmt(affine[:n, 3])}"


def nifti_geometry_problem(header) -> str | None:
    """Why the geometry the NIfTI `header` describes cannot be trusted, or None."""
    n = _spatial_axes(header)
    sform = _sform(header)
    for axis, value in enumerate(float(v) for v in header["pixdim"][1 : n + 1]):
        if math.isfinite(value) and value > 0:
            continue
        field = f"pixdim[{axis + 1}], the voxel size along {'xyz'[axis]}, is {value:g}"
        if sform is None or not _usable(sform, n):
            return f"{field} and there is no sform: the voxel spacing is unknown"
        effect = "a spacing of 1 mm" if value == 0 else "that axis mirrored" if value < 0 else "no spacing"
        return (
            f"{field} while the sform says {_describe(sform, n)}: SimpleITK and nnU-Net would read"
            f" {effect}; rewrite the header from the sform"
        )
    if sform is not None and not _usable(sform, n):
        return f"the sform is not a usable transform (singular or not finite): {sform[:3].round(4).tolist()}"
    if sform is not None and int(header["qform_code"]) > 0:
        qform = np.asarray(header.get_qform(), dtype=float)
        if not _same(qform, sform, n):
            return (
                f"qform and sform disagree (qform: {_describe(qform, n)}; sform: {_describe(sform, n)}):"
                " which one is right cannot be told"
            )
    return None


def itk_affine(image: sitk.Image, n: int) -> np.ndarray:
    """SimpleITK's geometry of `image` as a NIfTI-style (RAS) affine of its first `n` axes."""
    d = image.GetDimension()
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(d, d)[:n, :n]
    affine = np.eye(4)
    flip = _LPS_TO_RAS[:n]
    affine[:n, :n] = flip[:, None] * direction * np.asarray(image.GetSpacing()[:n])
    affine[:n, 3] = flip * np.asarray(image.GetOrigin()[:n])
    return affine


def itk_reading_problem(header, image: sitk.Image) -> str | None:
    """Why SimpleITK's reading of a NIfTI file is not what its header's sform (else qform) says,
    or None: ITK takes the qform where the sform is sheared or its scales differ from pixdim."""
    sform = _sform(header)
    if sform is not None:
        name, affine = "sform", sform
    elif int(header["qform_code"]) > 0:
        name, affine = "qform", np.asarray(header.get_qform(), dtype=float)
    else:
        return None  # no transform: pixdim alone, which SimpleITK reads as it is
    n = min(_spatial_axes(header), image.GetDimension())
    read = itk_affine(image, n)
    if _same(read, affine, n):
        return None
    return (
        f"SimpleITK reads {_describe(read, n)}, while the {name} says {_describe(affine, n)}"
        " (a sheared sform, or scales that disagree with pixdim): rewrite the header"
    )
