"""The high-resolution 2D configuration (`2d_<size>`) and the plan-and-preprocess pipeline.

MedDINOv3 trains on axial slices resampled so that the nnU-Net 2D patch covers the same field
of view at `size` x `size` pixels (896 in the paper). The release asks users to hand-edit
nnUNetPlans.json for this; here the configuration is derived from the planned "2d" one and
preprocessed by nnU-Net itself.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import partial
from pathlib import Path

from meddinov3.datasets import dataset_folder_name, read_dataset_json
from meddinov3.io import atomic_write_json
from meddinov3.nnunet.paths import NnUNetSetupError, PREPROCESSED, RAW, require_folders

VIT_PATCH = 16
DEFAULT_PLANS = "nnUNetPlans"
# nnU-Net's printed output of `meddinov3 plan` (configuration dictionaries of ~1,600 characters a
# line), appended per run in the dataset's preprocessed folder.
PLAN_LOG = "meddinov3_plan.log"


def highres_name(size: int) -> str:
    return f"2d_{size}"


def resolved_configuration(plans: dict, name: str) -> dict:
    """A configuration with its `inherits_from` chain applied, as nnU-Net resolves it."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    if name not in plans["configurations"]:
        available = sorted(plans["configurations"])
        raise NnUNetSetupError(f"configuration {name!r} is not in the plans; available: {available}")
    return PlansManager(plans).get_configuration(name).configuration


def highres_configuration(plans: dict, size: int, base: str = "2d", batch_size: int | None = None) -> dict:
    """The `2d_<size>` entry: base 2D plan with patch size x size and the spacing that keeps its field of view.

    spacing_new = spacing_2d * patch_2d / size, per axis. The batch size is the base one (as in the
    release) unless given.
    """
    if size <= 0 or size % VIT_PATCH:
        raise ValueError(f"--size must be a positive multiple of the ViT patch size {VIT_PATCH}, got {size}")
    base_config = resolved_configuration(plans, base)
    if len(base_config["patch_size"]) != 2:
        raise NnUNetSetupError(f"configuration {base!r} is not 2D (patch size {base_config['patch_size']})")
    spacing = [float(s) * float(p) / size for s, p in zip(base_config["spacing"], base_config["patch_size"])]
    median = [float(m) * float(old) / new for m, old, new in
              zip(base_config["median_image_size_in_voxels"], base_config["spacing"], spacing)]
    return {
        "inherits_from": base,
        "data_identifier": f"{plans['plans_name']}_{highres_name(size)}",
        "patch_size": [size, size],
        "spacing": spacing,
        "median_image_size_in_voxels": median,
        "batch_size": int(batch_size if batch_size is not None else base_config["batch_size"]),
    }


def with_highres_configuration(plans: dict, size: int, base: str = "2d", batch_size: int | None = None) -> dict:
    """A copy of `plans` with `2d_<size>` added (replacing an older entry of that name)."""
    new_plans = json.loads(json.dumps(plans))
    new_plans["configurations"][highres_name(size)] = highres_configuration(plans, size, base, batch_size)
    return new_plans


def batch_size_that_fits(
    base_batch: int, size: int, dataset_json: dict, gpu_memory_gib: float, method: str = "meddinov3",
    backbone: str | None = None,
) -> int:
    """nnU-Net's 2d batch size, lowered until training `method`'s network on its backbone (or on
    the `backbone` preset) at size x size fits `gpu_memory_gib` (estimate in `memory.py`)."""
    from meddinov3.nnunet.memory import GIB, USABLE_FRACTION, backbone_name, backbone_preset, method_network_estimate

    classes, channels = len(dataset_json["labels"]), len(dataset_json["channel_names"])
    estimate = method_network_estimate(size, classes, channels, method, backbone)
    network = f"the {backbone_name(backbone_preset(method, backbone))} network"
    largest = estimate.largest_batch(gpu_memory_gib)
    if largest < 1:
        raise NnUNetSetupError(
            f"{highres_name(size)}: one {size}x{size} slice needs about {estimate.total_bytes(1) / GIB:.1f} GiB to "
            f"train {network}, more than {USABLE_FRACTION:.0%} of {gpu_memory_gib:g} GiB; "
            f"plan a smaller --size"
        )
    batch = min(base_batch, largest)
    print(
        f"{highres_name(size)}: batch size {batch} (nnU-Net's 2d: {base_batch}; at most {largest} fit in "
        f"{gpu_memory_gib:g} GiB), about {estimate.total_bytes(batch) / GIB:.1f} GiB to train {network}"
    )
    return batch


def plans_path(dataset_name: str, plans_identifier: str = DEFAULT_PLANS) -> Path:
    return require_folders(PREPROCESSED)[PREPROCESSED] / dataset_name / f"{plans_identifier}.json"


def plan_log_path(dataset_name: str) -> Path:
    return require_folders(PREPROCESSED)[PREPROCESSED] / dataset_name / PLAN_LOG


def load_plans(dataset_name: str, plans_identifier: str = DEFAULT_PLANS) -> dict:
    path = plans_path(dataset_name, plans_identifier)
    if not path.is_file():
        raise NnUNetSetupError(f"no plans at {path}; run `meddinov3 plan {dataset_name}` first")
    return json.loads(path.read_text(encoding="utf-8"))


def plan_and_preprocess(
    dataset: str | int,
    sizes: tuple[int, ...] = (896,),
    num_processes: int = 1,
    batch_size: int | None = None,
    verify_dataset: bool = True,
    gpu_memory_gib: float | None = None,
    plans_identifier: str = DEFAULT_PLANS,
    reuse_fingerprint: bool = True,
    method: str = "meddinov3",
    backbone: str | None = None,
) -> Path:
    """Fingerprint, nnU-Net plans, the `2d_<size>` configurations, and preprocessing of 2d and those.

    An existing fingerprint is reused unless `reuse_fingerprint=False`, so re-running after an
    interruption skips that step. The `2d_<size>` batch size is `batch_size` when given, else the
    2d one's (as in the paper), lowered to fit `gpu_memory_gib` when that is given: training
    `method`'s network on its backbone (or on the `backbone` preset).
    What nnU-Net prints goes to `plan_log_path(dataset)`; its progress bars and warnings (stderr)
    stay on the terminal, each preprocessing bar after a line naming its configuration.
    Returns the plans file.
    """
    if batch_size is not None and gpu_memory_gib is not None:
        raise ValueError("give either a batch size or the GPU memory to fit, not both")
    raw = require_folders(RAW, PREPROCESSED)[RAW]
    for size in sizes:
        if size <= 0 or size % VIT_PATCH:
            raise ValueError(f"--size must be a positive multiple of the ViT patch size {VIT_PATCH}, got {size}")
    if gpu_memory_gib is not None:  # a method or preset that cannot be planned for fails before any work
        from meddinov3.backbone import preset_config
        from meddinov3.nnunet.memory import backbone_preset

        preset_config(backbone_preset(method, backbone))
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints,
        plan_experiments,
        preprocess,
    )
    from nnunetv2.utilities.dataset_name_id_conversion import convert_dataset_name_to_id

    from meddinov3.capture import output_to_log
    from meddinov3.nnunet.integrity import verify_raw_dataset

    name = dataset_folder_name(dataset)
    dataset_id = convert_dataset_name_to_id(name)
    log = plan_log_path(name)
    nnunet_output = partial(output_to_log, log, stderr=False)
    if verify_dataset:
        verify_raw_dataset(raw / name, num_processes)

    with nnunet_output():
        print(f"=== meddinov3 plan {name}, {datetime.now().isoformat(timespec='seconds')}")
        # Checked above, every file whole and finite; nnU-Net's own check would read them all again.
        extract_fingerprints([dataset_id], num_processes=num_processes, check_dataset_integrity=False,
                             clean=not reuse_fingerprint)
        plan_experiments([dataset_id], overwrite_plans_name=None if plans_identifier == DEFAULT_PLANS else plans_identifier)

    plans = load_plans(name, plans_identifier)
    path = plans_path(name, plans_identifier)
    if gpu_memory_gib is not None:
        base_batch = resolved_configuration(plans, "2d")["batch_size"]
        dataset_json = read_dataset_json(raw / name).raw
    for size in sizes:
        batch = batch_size
        if gpu_memory_gib is not None:
            batch = batch_size_that_fits(base_batch, size, dataset_json, gpu_memory_gib, method, backbone)
        plans = with_highres_configuration(plans, size, batch_size=batch)
    atomic_write_json(path, plans)

    for configuration in ["2d", *(highres_name(size) for size in sizes)]:
        print(f"preprocessing {configuration}", flush=True)
        with nnunet_output():
            preprocess([dataset_id], plans_identifier, [configuration], [num_processes])
    return path
