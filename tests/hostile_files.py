"""Real files with the damage a careless or unlucky user hands the tools (issue 25), for the tests.

NIfTI headers are written by nibabel and then edited field by field in their raw bytes, so the
damage is exactly the one named (nibabel repairs pixdim when it loads a header, and sets qform
and sform from one affine when it saves)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import nibabel
import numpy as np
import SimpleITK as sitk

AFFINE = np.array([[0.8, 0, 0, -25.0], [0, 0.8, 0, -25.0], [0, 0, 2.5, 0.0], [0, 0, 0, 1]])
LATIN1_NAME = b"caf\xe9"  # "cafe" with an acute e in Latin-1: not valid UTF-8


def pixdim_zero(header) -> None:
    header["pixdim"][0][1] = 0


def pixdim_negative(header) -> None:
    header["pixdim"][0][1] = -0.8


def sform_twice_as_wide(header) -> None:
    """The sform's x column doubled; the qform (from pixdim) unchanged."""
    header["srow_x"][0][0] = 1.6


def sform_only_twice_as_wide(header) -> None:
    """No qform, and an sform whose scales disagree with pixdim: SimpleITK falls back to pixdim."""
    header["srow_x"][0][0] = 1.6
    header["qform_code"] = 0


def z_unknown(header) -> None:
    """No transform at all, and no slice spacing."""
    header["pixdim"][0][3] = 0
    header["qform_code"] = header["sform_code"] = 0


DAMAGE = {
    "pixdim 0": (pixdim_zero, "pixdim[1], the voxel size along x, is 0 while the sform says spacing (0.8, 0.8, 2.5) mm"),
    "pixdim negative": (pixdim_negative, "pixdim[1], the voxel size along x, is -0.8 while the sform says"),
    "qform and sform disagree": (sform_twice_as_wide, "qform and sform disagree (qform: spacing (0.8, 0.8, 2.5) mm"),
    "sform scales not pixdim": (sform_only_twice_as_wide, "SimpleITK reads spacing (0.8, 0.8, 2.5) mm"),
    "pixdim 0, no transform": (z_unknown, "pixdim[3], the voxel size along z, is 0 and there is no sform: the voxel"
                               " spacing is unknown"),
}


def nifti_with(path: Path, voxels_zyx: np.ndarray, edit=None, affine: np.ndarray = AFFINE) -> Path:
    """`voxels_zyx` as a NIfTI-1 file (qform = sform = `affine`, codes 1), its header edited by `edit`."""
    image = nibabel.Nifti1Image(np.ascontiguousarray(voxels_zyx.transpose(2, 1, 0)), affine)
    image.set_qform(affine, 1)
    image.set_sform(affine, 1)
    data = bytearray(image.to_bytes())
    if edit is not None:
        header = np.frombuffer(bytes(data[:348]), dtype=nibabel.Nifti1Header.template_dtype).copy()
        edit(header)
        data[:348] = header.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(bytes(data)) if path.name.endswith(".gz") else bytes(data))
    return path


def sitk_volume(path: Path, voxels_zyx: np.ndarray, spacing=(0.8, 0.8, 2.5), direction=None, origin=None) -> Path:
    image = sitk.GetImageFromArray(voxels_zyx)
    image.SetSpacing(spacing)
    if direction is not None:
        image.SetDirection(direction)
    if origin is not None:
        image.SetOrigin(origin)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), path.name.endswith(".gz"))
    return path


def latin1_path(folder: Path, suffix: str) -> str:
    """A path in `folder` whose file name is Latin-1 bytes, as Python holds it (lone surrogates)."""
    return os.fsdecode(os.fsencode(folder) + b"/" + LATIN1_NAME + suffix.encode())


def cut_end(path: Path, nbytes: int) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[:-nbytes])
    return path
