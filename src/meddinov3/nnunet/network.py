"""Build the segmentation network from a spec, and load pretrained encoder weights into it, strictly."""

from __future__ import annotations

from dataclasses import fields

from torch import nn

from meddinov3.backbone import BackboneConfig, build_backbone, load_backbone
from meddinov3.errors import InputError
from meddinov3.nnunet.spec import NetworkSpec
from meddinov3.segmentation import adapt_input_channels, build_segmenter

# Fields that only change training behaviour, not what the weights mean.
_TRAINING_ONLY_FIELDS = ("drop_path_rate",)


class PretrainedWeightsError(InputError, ValueError):
    """Pretrained weights that do not fit the network exactly; the message names the file."""


def build_network(spec: NetworkSpec, num_input_channels: int, num_output_channels: int) -> nn.Module:
    """The randomly initialised network described by `spec` (weights come from training or a checkpoint)."""
    backbone = build_backbone(spec.backbone_config())
    network = build_segmenter(
        backbone,
        num_output_channels,
        multiscale=spec.multiscale,
        interaction_layers=spec.interaction_layers,
        in_channels=num_input_channels,
    )
    # Segmentation never masks patches. A trainable parameter that never gets a gradient makes
    # DistributedDataParallel wait for it forever, so the mask token is frozen.
    network.dino_encoder.mask_token.requires_grad_(False)
    return network


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


def load_pretrained_encoder(network: nn.Module, spec: NetworkSpec, num_input_channels: int) -> None:
    """Copy the spec's pretrained backbone into `network.dino_encoder`; any mismatch is an error.

    Nothing is dropped or left at random: the architecture recorded in the spec must equal the
    checkpoint's, and every tensor must be present with the same shape (a checkpoint without the
    storage tokens, for example, fails here instead of training with random ones).
    """
    if spec.pretrained_weights is None:
        return
    source = spec.pretrained_weights
    pretrained = load_backbone(source)
    expected = spec.backbone_config()
    differences = config_differences(pretrained.config, expected)
    if differences:
        raise PretrainedWeightsError(
            f"{source}: the pretrained backbone differs from the network's architecture:\n  "
            + "\n  ".join(differences)
        )
    if num_input_channels not in (None, 1):
        adapt_input_channels(pretrained, num_input_channels)
    encoder = unwrap(network).dino_encoder
    try:
        encoder.load_state_dict(pretrained.state_dict(), strict=True)
    except RuntimeError as err:
        raise PretrainedWeightsError(f"{source}: weights do not fit the encoder: {err}") from err
