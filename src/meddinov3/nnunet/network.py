"""Build the segmentation network from a spec, and load pretrained encoder weights into it.

Loading is strict: the recorded architecture must be the checkpoint's and every tensor must fit.
Only the release recipe of the DINOv3 arms loads non-strictly, as the release does, and reports
what it dropped.
"""

from __future__ import annotations

from dataclasses import fields

from torch import nn

from meddinov3.backbone import BackboneConfig, DinoVisionTransformer, build_backbone, load_backbone
from meddinov3.errors import InputError
from meddinov3.nnunet.spec import NetworkSpec
from meddinov3.segmentation import adapt_input_channels, build_segmenter

# Fields that only change training behaviour, not what the weights mean.
_TRAINING_ONLY_FIELDS = ("drop_path_rate", "rope_shift_coords", "rope_jitter_coords", "rope_rescale_coords")


class PretrainedWeightsError(InputError, ValueError):
    """Pretrained weights that do not fit the network exactly; the message names the file."""


def build_network(spec: NetworkSpec, num_input_channels: int, num_output_channels: int) -> nn.Module:
    """The randomly initialised network described by `spec` (weights come from training or a checkpoint)."""
    backbone = build_backbone(spec.backbone_config())
    return build_segmenter(
        backbone,
        num_output_channels,
        multiscale=spec.multiscale,
        interaction_layers=spec.interaction_layers,
        in_channels=num_input_channels,
    )


def freeze_parts(network: nn.Module, names: tuple[str, ...]) -> None:
    """Stop training the named submodules or parameters (a recipe's `frozen`)."""
    for name in names:
        try:
            network.get_parameter(name).requires_grad_(False)
        except AttributeError:
            network.get_submodule(name).requires_grad_(False)


def unwrap(network: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel and torch.compile wrappers."""
    while True:
        if hasattr(network, "module") and isinstance(network.module, nn.Module):
            network = network.module
        elif hasattr(network, "_orig_mod"):
            network = network._orig_mod
        else:
            return network


def config_differences(found: BackboneConfig, expected: BackboneConfig) -> list[str]:
    return [
        f"{f.name}: weights {getattr(found, f.name)!r} vs network {getattr(expected, f.name)!r}"
        for f in fields(BackboneConfig)
        if f.name not in _TRAINING_ONLY_FIELDS and getattr(found, f.name) != getattr(expected, f.name)
    ]


def load_pretrained_encoder(
    encoder: DinoVisionTransformer, spec: NetworkSpec, num_input_channels: int | None, strict: bool = True
) -> list[str]:
    """Copy the spec's pretrained backbone into `encoder`; returns the checkpoint keys left out.

    strict: nothing is dropped or left at random: the architecture recorded in the spec must equal
    the checkpoint's, and every tensor must be present with the same shape (a checkpoint without
    the storage tokens, for example, fails here instead of training with random ones).
    Not strict (the release's DINOv3 arms): the encoder may lack tensors of the checkpoint (the
    release's ViT has no storage tokens and no key-bias masks); those are dropped and returned,
    values are cast to the encoder's dtypes (RoPE periods to bfloat16). A tensor the encoder needs
    but the file lacks is still an error.
    `num_input_channels` other than None or 1 adapts the patch embedding (`adapt_input_channels`).
    """
    if spec.pretrained_weights is None:
        return []
    source = spec.pretrained_weights
    pretrained = load_backbone(source)
    differences = config_differences(pretrained.config, spec.backbone_config())
    if strict and differences:
        raise PretrainedWeightsError(
            f"{source}: the pretrained backbone differs from the network's architecture:\n  "
            + "\n  ".join(differences)
        )
    if num_input_channels not in (None, 1):
        adapt_input_channels(pretrained, num_input_channels)
    try:
        result = encoder.load_state_dict(pretrained.state_dict(), strict=strict)
    except RuntimeError as err:
        raise PretrainedWeightsError(f"{source}: weights do not fit the encoder: {err}") from err
    if result.missing_keys:
        raise PretrainedWeightsError(f"{source}: the encoder needs tensors the file lacks: {result.missing_keys}")
    return list(result.unexpected_keys)
