"""What a trained model needs to rebuild and run its network, stored inside nnU-Net's own plans.

The spec (method, backbone architecture, decoder layers, numeric precision) is written into the configuration the
trainer runs (`plans["configurations"][name]["meddinov3"]`). nnU-Net saves those plans next to
the model (plans.json) and in every checkpoint, and hands them to the trainer's static
`build_network_architecture`, so training, resuming, validation, `meddinov3 predict` and
`nnUNetv2_predict` all rebuild the same network from them; the pretrained weights file is not
needed after training because the fine-tuned weights include the encoder.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from meddinov3.backbone import BackboneConfig
from meddinov3.errors import InputError
from meddinov3.nnunet.methods import Method, Recipe, check_recipe_switch, get_method
from meddinov3.segmentation import default_interaction_layers

PLANS_KEY = "meddinov3"
# For `nnUNetv2_train -tr MedDINOv3Trainer`, where no command line of ours is involved.
WEIGHTS_ENV = "MEDDINOV3_WEIGHTS"
RECIPE_ENV = "MEDDINOV3_RECIPE"


class NetworkSpecError(InputError, ValueError):
    """A network spec that is missing, inconsistent, or does not fit the plans."""


@dataclass
class NetworkSpec:
    method: str
    backbone: dict[str, Any]
    multiscale: bool
    interaction_layers: list[int]
    # Where the encoder came from, for the record; rebuilding never reads it.
    pretrained_weights: str | None = None
    # "default" or "release" (`--recipe`): which of the method's recipes trains it.
    recipe: str = "default"
    # bf16 / fp16 / fp32 (`meddinov3.precision`): what training ran at, and what validation and
    # prediction use unless told otherwise. None until a trainer resolves it for its device.
    precision: str | None = None

    def backbone_config(self) -> BackboneConfig:
        return BackboneConfig.from_dict(self.backbone)

    def training_recipe(self) -> Recipe:
        return get_method(self.method).recipe_for(self.recipe)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "NetworkSpec":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise NetworkSpecError(f"unknown keys in the stored network spec: {unknown}")
        spec = cls(**dict(values))
        get_method(spec.method)
        check_recipe_switch(spec.recipe)
        spec.backbone_config()
        return spec


def build_spec(
    method: Method,
    weights: str | os.PathLike | None = None,
    backbone: str | None = None,
    backbone_overrides: Mapping[str, Any] | None = None,
    interaction_layers: list[int] | None = None,
    recipe: str = "default",
) -> NetworkSpec:
    """The spec for a new training run.

    Architecture: the weights' own (inferred from the checkpoint) when weights are given and no
    backbone is named; otherwise the named preset (default: the method's) with overrides. In the
    second case the weights must fit that architecture exactly (checked when they are loaded).
    The method's recipe sets the fine-tuning fields (drop path, no RoPE augmentation; with
    `recipe="release"` also the release's ViT defaults) unless `backbone_overrides` say otherwise.
    """
    from meddinov3.backbone import load_backbone, preset_config
    from meddinov3.backbone.hub import resolve_weights

    if method.backbone_preset is None:
        raise NetworkSpecError(f"method {method.name!r} does not use a ViT backbone")
    if method.needs_weights and weights is None:
        raise NetworkSpecError(
            f"method {method.name!r} fine-tunes pretrained weights: pass --weights PATH or a Hub name such as "
            f"meddinov3-ct3m (or set {WEIGHTS_ENV} for nnUNetv2_train)"
        )
    overrides = {**method.recipe_for(recipe).backbone, **(backbone_overrides or {})}
    if weights is not None:
        # A Hub name becomes its file in the cache once, here: the spec records a local path, so
        # resuming, validation and every DDP rank read the same file without asking the Hub again.
        weights = resolve_weights(weights)
    if weights is not None and backbone is None:
        config = load_backbone(weights).config.replace(**overrides)
    else:
        config = preset_config(backbone or method.backbone_preset, **overrides)
    layers = list(interaction_layers) if interaction_layers else default_interaction_layers(config.depth)
    return NetworkSpec(
        method=method.name,
        backbone=config.to_dict(),
        multiscale=method.multiscale,
        interaction_layers=layers if method.multiscale else [config.depth - 1],
        pretrained_weights=str(os.path.abspath(weights)) if weights is not None else None,
        recipe=recipe,
    )


def spec_in_configuration(configuration: Mapping[str, Any]) -> NetworkSpec | None:
    values = configuration.get(PLANS_KEY)
    return NetworkSpec.from_dict(values) if values is not None else None


def attach_spec(plans: dict, configuration: str, spec: NetworkSpec) -> None:
    """Store the spec in the plans' entry for `configuration` (in place)."""
    if configuration not in plans["configurations"]:
        raise NetworkSpecError(f"configuration {configuration!r} not in plans {sorted(plans['configurations'])}")
    plans["configurations"][configuration][PLANS_KEY] = spec.to_dict()


def spec_in_plans(plans: Mapping[str, Any], configuration: str) -> NetworkSpec | None:
    entry = plans.get("configurations", {}).get(configuration, {})
    return spec_in_configuration(entry)


def check_patch_size(patch_size: Any, spec: NetworkSpec, configuration: str = "") -> None:
    patch = spec.backbone_config().patch_size
    bad = [int(p) for p in patch_size if int(p) % patch]
    if len(patch_size) != 2 or bad:
        raise NetworkSpecError(
            f"configuration {configuration!r} has patch size {list(patch_size)}; the ViT trainers need a 2D patch "
            f"whose sides are multiples of {patch}. Create one with `meddinov3 plan DATASET --size N` "
            f"(N a multiple of {patch}) and train with --config 2d_N"
        )


def recorded_spec(configuration: Mapping[str, Any], patch_size: Any, method: str | None = None) -> NetworkSpec:
    """The spec a trainer rebuilds its network from (at prediction too): it must be in the plans,
    be for `method` when one is named, and fit the patch size."""
    spec = spec_in_configuration(configuration)
    if spec is None or (method is not None and spec.method != method):
        command = f"meddinov3 train --method {method}" if method else "meddinov3 train"
        raise NetworkSpecError(
            f"these plans carry no {method or 'MedDINOv3'} network spec: train with `{command}` or its trainer "
            "so that the model folder's plans.json records it"
        )
    check_patch_size(patch_size, spec)
    return spec
