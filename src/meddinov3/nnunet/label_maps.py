"""The label maps `meddinov3 predict` writes: read back before they are renamed into place, and
checked again before a rerun counts one as done.

On a full disk SimpleITK's NIfTI writer reports success after writing nothing, or a file cut off
where the space ran out; nnU-Net's `write_seg` passes that on. Here the label map goes through
`meddinov3.io.atomic_write`, and the temporary file is read back whole through
`meddinov3.images` and compared with the labels and geometry that were meant, so a failed write
ends in one error naming the file and leaves nothing under its name. A label map left by an older
version or another tool (0 bytes, cut off, another grid than its scan) is not taken as done.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from meddinov3.capture import stderr_captured
from meddinov3.images import ImageFileError, check_image_file, read_header, read_image
from meddinov3.io import atomic_write

# The written geometry may differ from the meant one by float32 rounding in the NIfTI header.
_GEOMETRY_ATOL = 1e-4
_GEOMETRY_RTOL = 1e-5


def _geometry_differs(image: Any, meant: dict) -> bool:
    read = (image.GetSpacing(), image.GetOrigin(), image.GetDirection())
    wanted = (meant["spacing"], meant["origin"], meant["direction"])
    return any(not np.allclose(a, b, rtol=_GEOMETRY_RTOL, atol=_GEOMETRY_ATOL) for a, b in zip(read, wanted))


def readback_problem(tmp: Path, segmentation: np.ndarray, properties: dict) -> str | None:
    """Why the label map written to `tmp` is not `segmentation` with the geometry in
    `properties` (nnU-Net's SimpleITK reader's `sitk_stuff`), or None."""
    import SimpleITK as sitk

    try:
        image = read_image(tmp)
    except ImageFileError as error:
        return error.problem
    if "sitk_stuff" not in properties:
        return None  # another reader/writer pair: it orders axes its own way; whole and readable is the check
    if not np.array_equal(sitk.GetArrayViewFromImage(image), segmentation):
        return "its labels differ from the ones computed"
    if _geometry_differs(image, properties["sitk_stuff"]):
        return f"its geometry differs from its scan's ({image.GetSpacing()} mm spacing)"
    return None


def write_label_map(writer: Any, segmentation: np.ndarray, properties: dict, output: Path, ending: str) -> Path:
    """`segmentation` written by nnU-Net's `writer` (its image reader/writer) to `output`, checked.
    What the NIfTI library prints on a failed write ("** ERROR: NWAD: wrote only ...") becomes
    part of the error; on success it is passed on."""
    said: list[str] = []

    def write(tmp: str) -> None:
        with stderr_captured() as captured:
            writer.write_seg(segmentation, tmp, properties)
        said.extend(text.strip() for text in captured if text.strip())

    def check(tmp: Path) -> str | None:
        problem = readback_problem(tmp, segmentation, properties)
        if problem and said:
            return f"{problem} ({' '.join(' '.join(said).split())})"
        return problem

    written = atomic_write(output, write, check, ending=ending)
    for text in said:
        print(text, file=sys.stderr)
    return written


def remove_leftovers(output: Path, ending: str) -> None:
    """Temporary files of `output` that a killed run left (never complete, never renamed)."""
    for leftover in output.parent.glob(f".{output.name}.*.tmp{ending}"):
        leftover.unlink(missing_ok=True)


def unfinished(output: Path, scan: str) -> str | None:
    """Why the existing label map `output` of the scan `scan` does not count as done, or None:
    it must be a whole image file on the scan's grid."""
    try:
        check_image_file(output)
        found, expected = read_header(output), read_header(scan)
    except ImageFileError as error:
        return error.problem
    if found.size != expected.size or not np.allclose(found.spacing, expected.spacing, rtol=_GEOMETRY_RTOL,
                                                      atol=_GEOMETRY_ATOL):
        return f"size {found.size} and spacing {found.spacing}, its scan's are {expected.size}, {expected.spacing}"
    return None
