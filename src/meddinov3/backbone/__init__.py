"""The DINOv3 ViT backbone, its presets, and readers/writers for every checkpoint layout."""

from meddinov3.backbone.checkpoints import CheckpointError, load_backbone
from meddinov3.backbone.config import BackboneConfig
from meddinov3.backbone.presets import PRESETS, preset_config
from meddinov3.backbone.vit import DinoVisionTransformer


def build_backbone(preset: str | BackboneConfig = "vitb16", **overrides) -> DinoVisionTransformer:
    """A randomly initialised backbone from a preset name or a config, with keyword overrides."""
    if isinstance(preset, BackboneConfig):
        config = preset.replace(**overrides)
    else:
        config = preset_config(preset, **overrides)
    return DinoVisionTransformer(config)


__all__ = [
    "BackboneConfig",
    "CheckpointError",
    "DinoVisionTransformer",
    "PRESETS",
    "build_backbone",
    "load_backbone",
    "preset_config",
]
