"""A trained model folder, read once: plans, dataset.json, the network and each fold's weights.

What every consumer of a trained model needs (prediction through nnU-Net, export): the network
is rebuilt from the folder's plans (which carry the MedDINOv3 network spec) by the trainer's own
static builder, and the checkpoints are read with `weights_only=True` (see `checkpoints.py`). A
folder that cannot be used as it is (a missing file or fold, plans of another model, weights that
do not fit them) raises an `NnUNetSetupError` naming the file and the problem.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from meddinov3.datasets import read_dataset_json
from meddinov3.nnunet.paths import NnUNetSetupError

_NAMED_EXAMPLES = 3


@dataclass
class TrainedModel:
    folder: Path
    checkpoint_files: list[Path]  # one per fold, in the order asked for
    trainer_name: str
    configuration_name: str  # the nnU-Net configuration the checkpoints were trained with
    plans_manager: Any  # nnU-Net's PlansManager of the folder's plans.json
    configuration_manager: Any  # ... and its ConfigurationManager of the trained configuration
    dataset_json: dict
    num_input_channels: int
    network: Any  # torch.nn.Module in eval mode, holding the first fold's weights
    parameters: list[dict]  # each fold's network state dict
    mirroring_axes: tuple[int, ...] | None  # the axes nnU-Net mirrors at test time


def model_checkpoints(model_dir: str | os.PathLike, folds: Sequence[int | str], checkpoint_name: str) -> list[Path]:
    """The checkpoint file of each fold, after checking that `model_dir` is a trained model folder."""
    model_dir = Path(model_dir)
    for required in ("plans.json", "dataset.json"):
        if not (model_dir / required).is_file():
            raise NnUNetSetupError(f"{model_dir}: not a trained model folder (no {required})")
    if not folds:
        raise ValueError("at least one fold is needed")
    paths = [model_dir / f"fold_{fold}" / checkpoint_name for fold in folds]
    for path in paths:
        if not path.is_file():
            raise NnUNetSetupError(f"{path}: checkpoint not found (train this fold first or pick --checkpoint)")
    return paths


def read_folder_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise NnUNetSetupError(f"{path}: not readable as JSON ({error})") from None


def weights_mismatch(expected: Mapping[str, Any], found: Mapping[str, Any]) -> str | None:
    """What keeps `found` (a state dict) from loading strictly into a network whose state is `expected`."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    reshaped = [
        f"{k} {tuple(found[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in found and tuple(found[k].shape) != tuple(expected[k].shape)
    ]
    problems = [
        f"{len(keys)} {what} (e.g. {', '.join(keys[:_NAMED_EXAMPLES])})"
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("of another shape", reshaped))
        if keys
    ]
    return "; ".join(problems) or None


def classes_mismatch(expected: Mapping[str, Any], found: Mapping[str, Any], num_outputs: int) -> int | None:
    """The number of classes `found` (a state dict) predicts when that is all that keeps it from
    fitting a network of `num_outputs` outputs (the output layers differ in their first axis
    only); None otherwise."""
    if set(expected) != set(found):
        return None
    reshaped = [k for k in expected if tuple(found[k].shape) != tuple(expected[k].shape)]
    counts = {found[k].shape[0] for k in reshaped if found[k].ndim and expected[k].shape[0] == num_outputs
              and tuple(found[k].shape[1:]) == tuple(expected[k].shape[1:])}
    outputs_only = len(counts) == 1 and all(expected[k].shape[0] == num_outputs for k in reshaped)
    return counts.pop() if reshaped and outputs_only else None


def _build_network(model_dir: Path, trainer_name: str, plans_manager, configuration_manager, num_inputs, num_outputs):
    from meddinov3.errors import InputError
    from meddinov3.nnunet.trainer_classes import trainer_class

    trainer = trainer_class(trainer_name)
    if trainer is None:
        raise NnUNetSetupError(
            f"{model_dir}: trained by {trainer_name!r}, a trainer neither this package nor nnU-Net has"
        )
    try:
        return trainer.build_network_architecture(
            plans_manager, configuration_manager, num_inputs, num_outputs, enable_deep_supervision=False
        )
    except InputError as error:
        raise NnUNetSetupError(f"{model_dir / 'plans.json'}: {error}") from error


def load_trained_model(
    model_dir: str | os.PathLike, folds: Sequence[int | str] = (0,), checkpoint_name: str = "checkpoint_final.pth"
) -> TrainedModel:
    """Read `model_dir` (what `meddinov3 predict -m` takes) and rebuild its network on the CPU."""
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from meddinov3.nnunet.checkpoints import network_state, read_nnunet_checkpoint

    model_dir = Path(model_dir)
    files = model_checkpoints(model_dir, folds, checkpoint_name)
    checkpoints = [read_nnunet_checkpoint(path) for path in files]
    first = checkpoints[0]
    plans_manager = PlansManager(read_folder_json(model_dir / "plans.json"))
    dataset_json = read_dataset_json(model_dir).raw
    configuration = first["init_args"]["configuration"]
    if configuration not in plans_manager.available_configurations:
        raise NnUNetSetupError(
            f"{model_dir / 'plans.json'}: has no configuration {configuration!r}, which {files[0]} was trained with "
            f"(plans of another model?)"
        )
    configuration_manager = plans_manager.get_configuration(configuration)
    num_inputs = determine_num_input_channels(plans_manager, configuration_manager, dataset_json)
    num_outputs = plans_manager.get_label_manager(dataset_json).num_segmentation_heads
    network = _build_network(
        model_dir, first["trainer_name"], plans_manager, configuration_manager, num_inputs, num_outputs
    )
    parameters = [network_state(c) for c in checkpoints]
    for path, state in zip(files, parameters):
        classes = classes_mismatch(network.state_dict(), state, num_outputs)
        if classes is not None:
            raise NnUNetSetupError(
                f"{path}: its network predicts {classes} classes, but {model_dir / 'dataset.json'} defines"
                f" {num_outputs} ({', '.join(map(str, dataset_json['labels']))}): the dataset.json of another model?"
            )
        mismatch = weights_mismatch(network.state_dict(), state)
        if mismatch:
            raise NnUNetSetupError(
                f"{path}: weights do not fit the network {model_dir / 'plans.json'} describes ({mismatch})"
            )
    network.load_state_dict(parameters[0])
    axes = first.get("inference_allowed_mirroring_axes")
    return TrainedModel(
        folder=model_dir,
        checkpoint_files=files,
        trainer_name=first["trainer_name"],
        configuration_name=configuration,
        plans_manager=plans_manager,
        configuration_manager=configuration_manager,
        dataset_json=dataset_json,
        num_input_channels=num_inputs,
        network=network.eval(),
        parameters=parameters,
        mirroring_axes=tuple(int(a) for a in axes) if axes is not None else None,
    )
