"""What `meddinov3 predict` segments: the cases of its input, named the way the output will be.

NIfTI files are grouped into cases by nnU-Net's `CASE_XXXX` channel naming; a DICOM series
becomes a NIfTI file first. Refused, naming the files: two inputs that would write one label map
(`ct.nii` and `ct.nii.gz`), an output folder that is the input folder (the label maps would be
read as scans by the next run, and one could take a scan's name). Where the naming reads
differently from the model (`case_0000` + `case_0001` given to a one-channel model), each file
is segmented as a case of its own, with a warning that says so.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from meddinov3.errors import InputError
from meddinov3.images import read_image
from meddinov3.images.dicom import DicomSeries, find_dicom_series, read_dicom_series

NIFTI_ENDINGS = (".nii.gz", ".nii")
_CHANNEL_SUFFIX = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


class PredictionInputError(InputError, ValueError):
    """Input files that cannot be segmented as given; the message names them."""


@dataclass
class Case:
    name: str
    files: list[str]  # one file per input channel, in channel order


def _strip_nifti_ending(filename: str) -> str | None:
    for ending in NIFTI_ENDINGS:
        if filename.endswith(ending):
            return filename[: -len(ending)]
    return None


def _warn(message: str) -> None:
    print(message, file=sys.stderr)


def _one_label_map_each(cases: list[Case], files: dict[str, list[Path]]) -> list[Case]:
    """`cases`, after checking that no two files would be segmented into one label map."""
    for name, same in files.items():
        if len(same) > 1:
            raise PredictionInputError(
                f"{' and '.join(map(str, sorted(same)))}: both would be segmented into the label map of case"
                f" {name!r}; keep one of them"
            )
    return cases


def _warn_about_channel_names(matches: dict[Path, re.Match | None], warn: Callable[[str], None]) -> None:
    """A one-channel model given CASE_0000, CASE_0001, ...: nnU-Net's naming says channels of one case."""
    channels: dict[str, list[int]] = {}
    for match in matches.values():
        if match is not None:
            channels.setdefault(match["case"], []).append(int(match["channel"]))
    for case, found in sorted(channels.items()):
        if len(found) > 1 and 0 in found:
            warn(
                f"warning: {case}_0000 ... {case}_{max(found):04d}: nnU-Net's naming makes these {len(found)} files"
                f" channels of one case {case!r}, but the model takes one channel; each is segmented as a case of"
                f" its own (label maps {case}_0000 ... {case}_{max(found):04d})"
            )


def _nifti_cases(files: Sequence[Path], num_channels: int, warn: Callable[[str], None] = _warn) -> list[Case]:
    """Group NIfTI files into cases by nnU-Net's `CASE_XXXX` channel naming (needed for several
    channels); for one channel, `CASE_0000` files are named CASE and any other file by its stem."""
    stems = {f: _strip_nifti_ending(f.name) for f in files}
    channel_named = {f: _CHANNEL_SUFFIX.match(s) for f, s in stems.items()}
    all_channel_zero = all(m is not None and int(m["channel"]) == 0 for m in channel_named.values())
    if num_channels == 1 and not all_channel_zero:
        _warn_about_channel_names(channel_named, warn)
        by_name: dict[str, list[Path]] = {}
        for f in files:
            by_name.setdefault(stems[f], []).append(f)
        return _one_label_map_each([Case(stems[f], [str(f)]) for f in sorted(files)], by_name)
    cases: dict[str, dict[int, str]] = {}
    by_channel: dict[str, list[Path]] = {}
    for f, match in channel_named.items():
        if match is None:
            raise PredictionInputError(
                f"{f}: the model takes {num_channels} channels; name inputs CASE_0000.nii.gz ... "
                f"CASE_{num_channels - 1:04d}.nii.gz"
            )
        cases.setdefault(match["case"], {})[int(match["channel"])] = str(f)
        by_channel.setdefault(f"{match['case']} (channel {int(match['channel'])})", []).append(f)
    result = []
    for name, channels in sorted(cases.items()):
        if sorted(channels) != list(range(num_channels)):
            raise PredictionInputError(
                f"case {name!r}: found channels {sorted(channels)}, the model needs 0..{num_channels - 1}"
            )
        result.append(Case(name, [channels[c] for c in range(num_channels)]))
    return _one_label_map_each(result, by_channel)


def _dicom_to_nifti(series: DicomSeries, target: Path) -> None:
    import SimpleITK as sitk

    from meddinov3.io import atomic_write

    image, _ = read_dicom_series(series)
    atomic_write(target, lambda tmp: sitk.WriteImage(image, tmp, True), ending=".nii.gz")


def existing_input(input_path: str | os.PathLike) -> Path:
    path = Path(input_path)
    if not path.exists():
        raise PredictionInputError(f"{path}: no such file or folder")
    return path


def check_output_folder(input_path: Path, output: Path) -> None:
    """The label maps must not go where the scans are: a rerun would read them as scans, and a
    scan whose name is a case's output name would be replaced by its label map."""
    scans = input_path if input_path.is_dir() else input_path.parent
    if scans.resolve() == output.resolve():
        raise PredictionInputError(
            f"--output {output}: is the folder of the input scans; label maps written there would be read as scans"
            " by the next run (and could replace one): choose another folder"
        )


def collect_cases(input_path: str | os.PathLike, num_channels: int, scratch: Path) -> list[Case]:
    """Cases from a NIfTI file, a folder of NIfTI files, or a DICOM series folder.

    DICOM series are converted to NIfTI in `scratch` first (geometry kept); a folder holding
    several series gives one case per series.
    """
    path = existing_input(input_path)
    if path.is_file():
        if _strip_nifti_ending(path.name) is None:
            raise PredictionInputError(f"{path}: expected a NIfTI file (.nii or .nii.gz) or a DICOM series folder")
        return _nifti_cases([path], num_channels)
    niftis = [f for f in path.iterdir() if f.is_file() and _strip_nifti_ending(f.name) is not None]
    if niftis:
        return _nifti_cases(niftis, num_channels)
    series = find_dicom_series(path)
    if not series:
        raise PredictionInputError(f"{path}: contains neither NIfTI files nor a DICOM series")
    if num_channels != 1:
        raise PredictionInputError(f"{path}: DICOM input supports single-channel models, this one takes {num_channels}")
    cases = []
    for one in series:
        name = path.name if len(series) == 1 else f"{path.name}_{one.uid}"
        target = scratch / f"{name}.nii.gz"
        _dicom_to_nifti(one, target)
        cases.append(Case(name, [str(target)]))
    return cases


def check_inputs(cases: Sequence[Case]) -> None:
    """Read every input file whole (see `meddinov3.images`) before the model is loaded: a bad
    file stops the run naming it, before any output is written."""
    for case in cases:
        for file in case.files:
            read_image(file)
