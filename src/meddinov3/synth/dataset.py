"""Write synthetic cases as an nnU-Net v2 raw dataset.

    Dataset501_SynthAbdomen/
      dataset.json                 channel_names {"0": "CT"}, labels, numTraining, file_ending
      imagesTr/synth_0000_0000.nii.gz   int16 HU     labelsTr/synth_0000.nii.gz   uint8
      imagesTs/synth_0010_0000.nii.gz (held-out)     labelsTs/synth_0010.nii.gz

Each file is written under ``.partial/`` (outside the folders nnU-Net lists, so a killed run leaves
no file it would take for a case), checked and renamed into place by `meddinov3.io.commit`, image
before label, so a case is complete exactly when its label file exists. A rerun with the same arguments skips complete
cases (generation is deterministic, so the result is identical to an uninterrupted run).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

from meddinov3.errors import InputError
from meddinov3.io import atomic_write_text, commit
from meddinov3.synth.case import Preset, SynthCase, generate_case
from meddinov3.synth.tissues import LABELS

DATASET_FOLDER = re.compile(r"^Dataset(\d{3})_([A-Za-z0-9][A-Za-z0-9_\-]*)$")
FILE_ENDING = ".nii.gz"
PARTIAL = ".partial"


class DatasetError(InputError):
    """The output folder cannot hold this dataset; the message says why."""


@dataclass(frozen=True)
class SynthSpec:
    cases: int
    test_cases: int = 0
    seed: int = 0
    preset: Preset = "small"
    shape_zyx: Optional[tuple[int, int, int]] = None

    def to_json(self) -> dict:
        spec = asdict(self)
        spec["shape_zyx"] = list(self.shape_zyx) if self.shape_zyx else None
        return spec


def check_dataset_folder(out: Path) -> None:
    if not DATASET_FOLDER.match(out.name):
        raise DatasetError(
            f"{out}: nnU-Net dataset folders are named DatasetXXX_Name (three digits, e.g. "
            "Dataset501_SynthAbdomen)"
        )


def case_name(index: int) -> str:
    return f"synth_{index:04d}"


def case_paths(out: Path, index: int, test: bool) -> tuple[Path, Path]:
    images, labels = ("imagesTs", "labelsTs") if test else ("imagesTr", "labelsTr")
    name = case_name(index)
    return out / images / f"{name}_0000{FILE_ENDING}", out / labels / f"{name}{FILE_ENDING}"


def dataset_json(spec: SynthSpec) -> dict:
    return {
        "name": "SynthAbdomen",
        "description": "Synthetic abdominal CT (meddinov3 synth): organ shapes, Hounsfield units, "
        "texture and noise drawn per case; deterministic for a seed.",
        "channel_names": {"0": "CT"},
        "labels": dict(LABELS),
        "numTraining": spec.cases,
        "file_ending": FILE_ENDING,
        "synthetic": spec.to_json(),
    }


def write_image_atomically(array, case: SynthCase, final: Path) -> None:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    image.SetSpacing(case.spacing_xyz)
    image.SetOrigin(case.origin_xyz)
    image.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    partial = final.parent.parent / PARTIAL / f"{os.getpid()}_{final.name}"
    partial.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(partial), useCompression=True)
    final.parent.mkdir(parents=True, exist_ok=True)
    commit(partial, final)


def write_case(out: Path, spec: SynthSpec, index: int) -> bool:
    """Generate and write case ``index`` unless already complete; True if it was written."""
    image_path, label_path = case_paths(out, index, test=index >= spec.cases)
    if image_path.exists() and label_path.exists():
        return False
    case = generate_case(spec.seed, index, spec.preset, spec.shape_zyx)
    write_image_atomically(case.image, case, image_path)
    write_image_atomically(case.label, case, label_path)
    return True


def prepare_folder(out: Path, spec: SynthSpec) -> None:
    """Create the folder and dataset.json, or check that it holds this same dataset."""
    check_dataset_folder(out)
    description = out / "dataset.json"
    wanted = dataset_json(spec)
    if description.exists():
        existing = json.loads(description.read_text(encoding="utf-8"))
        if existing.get("synthetic") != wanted["synthetic"]:
            raise DatasetError(
                f"{out} already holds a dataset made with {existing.get('synthetic')}; this run "
                f"asks for {wanted['synthetic']}. Use another folder."
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(description, json.dumps(wanted, indent=2) + "\n")


def write_dataset(
    out: Path, spec: SynthSpec, workers: int = 1, on_case: Callable[[int, bool], None] | None = None
) -> None:
    """Generate every train and test case of ``spec`` into ``out`` (resumable)."""
    prepare_folder(out, spec)
    indices = range(spec.cases + spec.test_cases)
    report = on_case or (lambda index, written: None)
    if workers <= 1:
        for index in indices:
            report(index, write_case(out, spec, index))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = {index: pool.submit(write_case, out, spec, index) for index in indices}
            for index, future in futures.items():
                report(index, future.result())
    leftovers = out / PARTIAL
    if leftovers.exists():
        for path in leftovers.iterdir():
            path.unlink()
        leftovers.rmdir()
