"""The benchmark cases a corpus must not contain: every image of an nnU-Net raw dataset, fingerprinted.

`--exclude DATASET` names a raw dataset folder or an id/name under $nnUNet_raw. Every image file
of its imagesTr and imagesTs (each channel of a case) is read the way curation reads a source
and fingerprinted per slice (`fingerprint.py`). The fingerprints are kept in
`CORPUS/exclusions/<dataset>.json`, keyed by each file's size and modification time, so a rerun
reads only files that changed; the file also records what the corpus was kept clear of.
"""

from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from meddinov3.curate.sources import Source
from meddinov3.errors import InputError

EXCLUSIONS_FOLDER = "exclusions"
INDEX_FORMAT = 1
SPLITS = ("imagesTr", "imagesTs")


@dataclass(frozen=True)
class BenchmarkImage:
    dataset: str  # DatasetXXX_Name
    case: str
    file: str  # path inside the dataset folder, e.g. imagesTs/case_0000.nii.gz
    path: str

    def stat(self) -> list[int]:
        info = Path(self.path).stat()
        return [info.st_size, info.st_mtime_ns]


def benchmark_folder(dataset: str) -> Path:
    """A raw dataset folder given as a path, or an nnU-Net dataset id or name under $nnUNet_raw."""
    from meddinov3.datasets import dataset_folder, read_dataset_json

    try:
        folder = dataset_folder(Path(dataset).expanduser() if Path(dataset).expanduser().is_dir() else dataset)
        read_dataset_json(folder)
    except InputError as error:
        raise InputError(f"--exclude {dataset}: {error}") from None
    return folder.resolve()


def benchmark_images(folder: Path) -> list[BenchmarkImage]:
    """Every image of imagesTr and imagesTs, listed as nnU-Net lists them (case id + _XXXX channel)."""
    from nnunetv2.utilities.utils import create_paths_fn, get_identifiers_from_splitted_dataset_folder

    from meddinov3.datasets import read_dataset_json

    ending = read_dataset_json(folder, required=("file_ending",)).raw["file_ending"]
    images = []
    for split in SPLITS:
        split_folder = folder / split
        if not split_folder.is_dir():
            continue
        names = sorted(p.name for p in split_folder.iterdir() if p.name.endswith(ending))
        for case in get_identifiers_from_splitted_dataset_folder(str(split_folder), ending):
            for path in create_paths_fn(str(split_folder), names, ending, str(case)):
                images.append(BenchmarkImage(folder.name, str(case), f"{split}/{Path(path).name}", path))
    if not images:
        raise InputError(f"--exclude {folder}: no images (*_0000{ending}) in imagesTr or imagesTs")
    return images


def fingerprint_image(image: BenchmarkImage) -> dict[str, Any]:
    """The index entry of one benchmark image; an unreadable one is an error (it could not be excluded)."""
    from meddinov3.curate.fingerprint import slice_digests
    from meddinov3.curate.reading import UnreadableSource, read_image_volume

    stat = image.stat()
    try:
        volume = read_image_volume(Source("image", image.path))
    except UnreadableSource as error:
        raise InputError(f"--exclude {image.dataset}: {image.path}: {error}") from None
    return {
        "case": image.case, "file": image.file, "stat": stat,
        "shape_zyx": list(volume.voxels.shape), "digests": slice_digests(volume.voxels),
    }


def index_path(corpus: Path, dataset: str) -> Path:
    return Path(corpus) / EXCLUSIONS_FOLDER / f"{dataset}.json"


def read_index_file(path: Path) -> dict[str, dict[str, Any]]:
    """file -> entry of an earlier index; empty when there is none or it is unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != INDEX_FORMAT:
            return {}
        return {entry["file"]: entry for entry in data["images"]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def fingerprint_dataset(
    folder: Path, earlier: dict[str, dict[str, Any]], workers: int = 1, on_image: Callable[[], None] | None = None
) -> dict[str, Any]:
    """The index of one dataset: entries of `earlier` whose file did not change, the rest read anew."""
    images = benchmark_images(folder)
    entries: dict[str, dict[str, Any]] = {}
    todo = []
    for image in images:
        old = earlier.get(image.file)
        if old is not None and old.get("stat") == image.stat() and old.get("case") == image.case:
            entries[image.file] = old
        else:
            todo.append(image)

    def collect(fresh) -> None:
        for image, entry in zip(todo, fresh):
            entries[image.file] = entry
            if on_image is not None:
                on_image()

    if workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(min(workers, len(todo)), mp_context=multiprocessing.get_context("spawn")) as pool:
            collect(pool.map(fingerprint_image, todo))
    else:
        collect(map(fingerprint_image, todo))
    return {
        "format": INDEX_FORMAT, "dataset": folder.name, "folder": str(folder),
        "images": [entries[image.file] for image in images],
    }
