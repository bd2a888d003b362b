"""Small helpers to find release files by pattern, with errors that say what was expected."""

from __future__ import annotations

import re
from pathlib import Path

from meddinov3.convert.errors import ConversionError

NIFTI_SUFFIX = r"\.nii(?:\.gz)?"


def require_folder(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise ConversionError(f"{path}: {what} folder not found")
    return path


def numbered_files(folder: Path, stem_pattern: str) -> dict[int, Path]:
    """{number: file} for files named `<stem_pattern with one (\\d+) group>.nii[.gz]` in `folder`.

    Hidden files (macOS `._` resource forks ship inside some release archives) are ignored.
    """
    regex = re.compile(rf"^{stem_pattern}{NIFTI_SUFFIX}$", re.IGNORECASE)
    found: dict[int, Path] = {}
    for path in sorted(folder.iterdir()):
        match = regex.match(path.name)
        if match is None or path.name.startswith(".") or not path.is_file():
            continue
        number = int(match.group(1))
        if number in found:
            raise ConversionError(f"{folder}: two files for number {number}: {found[number].name} and {path.name}")
        found[number] = path
    return found


def paired(images: dict[int, Path], labels: dict[int, Path], where: Path) -> list[tuple[int, Path, Path]]:
    """Image/label pairs by number; an image without a label (or the reverse) is an error."""
    missing_labels = sorted(set(images) - set(labels))
    missing_images = sorted(set(labels) - set(images))
    if missing_labels:
        raise ConversionError(f"{where}: no label for image number(s) {missing_labels[:10]}")
    if missing_images:
        raise ConversionError(f"{where}: no image for label number(s) {missing_images[:10]}")
    return [(number, images[number], labels[number]) for number in sorted(images)]
