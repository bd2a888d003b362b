"""What a user needs to feed an exported network as nnU-Net feeds it, as one JSON document.

It travels inside the ONNX file (`metadata_props`, key `meddinov3`; ONNX Runtime shows it in
`session.get_modelmeta().custom_metadata_map`). Every value is read from the model folder: the
plans (axis order, target spacing, normalisation schemes and the dataset's foreground intensity
statistics, resampling, patch size), dataset.json (channels, labels) and the checkpoint (fold,
test-time mirroring axes). The formulas restate nnU-Net v2's `default_normalization_schemes`.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

from meddinov3.nnunet.model_folder import TrainedModel

METADATA_KEY = "meddinov3"
FORMAT = "meddinov3-onnx/1"
INPUT_NAME = "image"
OUTPUT_NAME = "logits"

# nnU-Net's tile step (fraction of the patch) and Gaussian weighting, as `meddinov3 predict` runs them.
SLIDING_WINDOW = {"step_fraction_of_patch": 0.5, "gaussian_weighting": True, "gaussian_sigma_fraction_of_patch": 0.125}

_PER_IMAGE = "over this image's voxels after cropping (only those inside the nonzero mask when use_mask_for_norm)"
_FORMULAS = {
    "CTNormalization": "(clip(x, clip[0], clip[1]) - mean) / max(std, 1e-8), with the dataset's foreground statistics",
    "ZScoreNormalization": f"(x - mean(x)) / max(std(x), 1e-8), mean and std {_PER_IMAGE}; voxels outside the "
    "mask stay 0",
    "NoNormalization": "x",
    "RescaleTo01Normalization": "(x - min(x)) / max(max(x) - min(x), 1e-8), per image",
    "RGBTo01Normalization": "x / 255",
}

STEPS = [
    "Read each channel as a (z, y, x) float array (SimpleITK's GetArrayFromImage order; spacing as (sz, sy, sx)).",
    "Transpose the axes by preprocessing.transpose_forward (spacing too).",
    "Crop all channels to the bounding box of the voxels that are nonzero in any channel.",
    "Normalise each channel as preprocessing.normalization says (before resampling).",
    "Resample axes 1 and 2 to preprocessing.spacing mm (axis 0, the slice axis, keeps its spacing), as "
    "preprocessing.resampling says (nnU-Net: third-order spline).",
    "For each slice along axis 0, slide a patch_size window (step and Gaussian weighting in inference); feed "
    "windows as (batch, channels, height, width) float32 and add up the weighted logits (optionally also the "
    "logits of windows mirrored along inference.mirroring_axes, 0: height, 1: width, flipped back).",
    "Softmax (or sigmoid for regions) over axis 1, argmax -> label value; undo the resampling, the crop and the "
    "transpose (preprocessing.transpose_backward).",
]


def normalization(model: TrainedModel) -> list[dict[str, Any]]:
    """Per input channel: nnU-Net's scheme, its parameters and the formula it applies."""
    config = model.configuration_manager
    intensities = model.plans_manager.foreground_intensity_properties_per_channel
    channels = []
    for index, name in sorted(model.dataset_json["channel_names"].items(), key=lambda item: int(item[0])):
        scheme = config.normalization_schemes[int(index)]
        stats = intensities.get(str(index), {})
        entry = {
            "channel": int(index),
            "name": name,
            "scheme": scheme,
            "use_mask_for_norm": bool(config.use_mask_for_norm[int(index)]),
            "formula": _FORMULAS.get(scheme, f"nnU-Net's {scheme}; see its code"),
            "foreground_intensity_properties": stats,
        }
        if scheme == "CTNormalization":
            clip = [stats["percentile_00_5"], stats["percentile_99_5"]]
            entry.update(clip=clip, mean=stats["mean"], std=stats["std"])
        channels.append(entry)
    return channels


def _output(model: TrainedModel) -> dict[str, Any]:
    labels = model.plans_manager.get_label_manager(model.dataset_json)
    return {
        "name": OUTPUT_NAME,
        "shape": ["batch", labels.num_segmentation_heads, *model.configuration_manager.patch_size],
        "dtype": "float32",
        "labels": model.dataset_json["labels"],
        "activation": "sigmoid per region" if labels.has_regions else "softmax over axis 1",
        "argmax_is_label_value": not labels.has_regions,
        "regions_class_order": model.dataset_json.get("regions_class_order"),
    }


def _network(model: TrainedModel) -> dict[str, Any] | None:
    from meddinov3.nnunet.spec import spec_in_configuration

    spec = spec_in_configuration(model.configuration_manager.configuration)
    if spec is None:
        return None
    values = spec.to_dict()
    values.pop("pretrained_weights")  # a path on the training machine
    return values


def export_metadata(model: TrainedModel, fold: int | str) -> dict[str, Any]:
    """The JSON document for the network of `model`'s `fold` (see the module docstring)."""
    config, plans = model.configuration_manager, model.plans_manager
    return {
        "format": FORMAT,
        "exported_by": f"meddinov3 {version('meddinov3')}",
        "model": {
            "dataset": plans.dataset_name,
            "plans": plans.plans_name,
            "configuration": model.configuration_name,
            "trainer": model.trainer_name,
            "fold": fold,
            "checkpoint": model.checkpoint_files[0].name,
            "network": _network(model),
            "precision": "float32 (RoPE in its own dtype: bfloat16 rounding kept where the model has it)",
        },
        "input": {
            "name": INPUT_NAME,
            "shape": ["batch", model.num_input_channels, *config.patch_size],
            "dtype": "float32",
            "channel_names": model.dataset_json["channel_names"],
        },
        "output": _output(model),
        "preprocessing": {
            "transpose_forward": plans.transpose_forward,
            "transpose_backward": plans.transpose_backward,
            "crop_to_nonzero": True,
            "normalization": normalization(model),
            "spacing": config.spacing,
            "resampling": {
                "data": config.configuration["resampling_fn_data"],
                "data_kwargs": config.configuration["resampling_fn_data_kwargs"],
                "probabilities": config.configuration["resampling_fn_probabilities"],
                "probabilities_kwargs": config.configuration["resampling_fn_probabilities_kwargs"],
            },
            "image_reader_writer": plans.plans["image_reader_writer"],
            "file_ending": model.dataset_json.get("file_ending"),
        },
        "inference": {
            "patch_size": config.patch_size,
            **SLIDING_WINDOW,
            "mirroring_axes": model.mirroring_axes,
        },
        "steps": STEPS,
    }


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON document inside a file `meddinov3 export` wrote."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        raise ValueError(f"{path}: no {METADATA_KEY!r} metadata; not exported by `meddinov3 export`")
    return json.loads(props[METADATA_KEY])
