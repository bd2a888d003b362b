"""Write a backbone as safetensors (+ JSON config) or as a Hugging Face DINOv3ViT folder."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file

from meddinov3.backbone.checkpoints import CONFIG_METADATA_KEY
from meddinov3.backbone.hf import hf_config_from_backbone, to_hf_state_dict
from meddinov3.backbone.vit import DinoVisionTransformer
from meddinov3.io import atomic_write, atomic_write_text


def save_backbone(model: DinoVisionTransformer, path: str | Path) -> Path:
    """`<path>.safetensors` with the config in its metadata, and the same config as `<path>.json`."""
    path = Path(path).with_suffix(".safetensors")
    config_json = json.dumps(model.config.to_dict(), indent=2)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={CONFIG_METADATA_KEY: config_json}))
    atomic_write_text(path.with_suffix(".json"), config_json + "\n")
    return path


def save_hf(model: DinoVisionTransformer, folder: str | Path) -> Path:
    """A folder `transformers.DINOv3ViTModel.from_pretrained` reads: config.json + model.safetensors."""
    folder = Path(folder)
    hf_config = hf_config_from_backbone(model.config)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    tensors = to_hf_state_dict(state, model.config)
    atomic_write(folder / "model.safetensors", lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    atomic_write_text(folder / "config.json", json.dumps(hf_config, indent=2) + "\n")
    return folder
