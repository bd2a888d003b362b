"""Demo step 1: synthesize the CT dataset in nnU-Net raw format and run nnU-Net's integrity check."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from meddinov3.datasets import DEFAULT_FILE_ENDING, first_channel_images, read_dataset_json
from meddinov3.demo.steps import StepContext
from meddinov3.demo.workspace import Workspace
from meddinov3.images import read_header


def cpu_workers(limit: int) -> int:
    return max(1, min(os.cpu_count() or 1, limit))


def case_geometry(image: Path) -> tuple[list[int], list[float]]:
    """(Z, Y, X) shape and (x, y, z) spacing of an image, from its header only."""
    header = read_header(image)
    return list(header.shape), [round(s, 3) for s in header.spacing]


def verify_with_nnunet(folder: Path, workers: int) -> None:
    """nnU-Net's own dataset integrity check (file names, geometry, labels); raises on a problem."""
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    verify_dataset_integrity(str(folder), num_processes=workers)


def synthesize(context: StepContext) -> dict[str, Any]:
    from meddinov3.synth.dataset import SynthSpec, write_dataset

    config = context.workspace.config
    spec = SynthSpec(config.train_cases, config.test_cases, config.seed, config.synth_size)  # type: ignore[arg-type]
    total = spec.cases + spec.test_cases
    context.expect(total, "cases")
    folder = context.workspace.raw_dataset
    # In this process: worker processes start slower than a demo-sized case is generated
    # (13 cases: 9 s inline, 16 s with two workers, measured on 2 cores).
    write_dataset(folder, spec, 1, lambda index, written: context.advance())
    context.update(total, "nnU-Net integrity check")
    verify_with_nnunet(folder, 1)
    return dataset_summary(folder)


def dataset_summary(folder: Path) -> dict[str, Any]:
    description = read_dataset_json(folder)
    cases = {}
    for split in ("imagesTr", "imagesTs"):
        for case, image in first_channel_images(folder, split, description.file_ending or DEFAULT_FILE_ENDING).items():
            shape, spacing = case_geometry(image)
            cases[case] = {"split": split[-2:], "shape_zyx": shape, "spacing_xyz": spacing}
    return {
        "folder": str(folder),
        "labels": description.raw["labels"],
        "cases": cases,
        "integrity_check": "passed (nnunetv2 verify_dataset_integrity)",
    }


def dataset_outputs(workspace: Workspace) -> list[Path]:
    return [workspace.raw_dataset]
