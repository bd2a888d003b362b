"""Training checkpoints (atomic, resumable, weights_only-loadable) and the teacher export.

A training checkpoint holds everything an uninterrupted run would still have in memory:
student, teacher, Gram teacher, optimizer, centres, each rank's RNG states, the iteration and
the config. The export is what users keep: the teacher in the MedDINOv3 release layout
`{"teacher": {"backbone.*", "dino_head.*", "ibot_head.*"}}` plus the backbone as safetensors.
Both carry the backbone's architecture (LayerNorm eps, RoPE dtype and rescaling, qkv-bias mode,
...) as JSON, the release file under the key `meddinov3_backbone_config` beside `teacher`, so the
next stage loads the same network instead of inferring what tensors cannot show. Readers of the
release layout take `teacher` and ignore the other key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from meddinov3.backbone import DinoVisionTransformer
from meddinov3.backbone.checkpoints import CONFIG_METADATA_KEY, CheckpointError, read_checkpoint
from meddinov3.backbone.export import save_backbone
from meddinov3.io import atomic_write

CHECKPOINT_NAME = "checkpoint.pth"
EXPORT_DIR = "export"
SNAPSHOT_DIR = "snapshots"
TEACHER_EXPORT = "teacher_checkpoint.pth"
BACKBONE_EXPORT = "backbone.safetensors"
HEAD_NAMES = ("dino_head", "ibot_head")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint written by `save_checkpoint`, read without unpickling code."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such training checkpoint") from None
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise CheckpointError(f"{path}: not a readable training checkpoint (truncated or corrupt?): {err}") from None
    required = {"iteration", "student", "teacher", "optimizer", "config"}
    missing = required - set(state) if isinstance(state, dict) else required
    if missing:
        raise CheckpointError(f"{path}: not a pretraining checkpoint of this package (missing {sorted(missing)})")
    return state


def head_states(path: str | Path) -> dict[str, dict[str, torch.Tensor]]:
    """DINO / iBOT head weights stored in a checkpoint (MedDINOv3 layout), if any."""
    obj, _ = read_checkpoint(path)
    if isinstance(obj, dict) and isinstance(obj.get("teacher"), dict):
        obj = obj["teacher"]
    heads: dict[str, dict[str, torch.Tensor]] = {}
    for name in HEAD_NAMES:
        prefix = f"{name}."
        found = {k[len(prefix) :]: v for k, v in obj.items() if k.startswith(prefix) and isinstance(v, torch.Tensor)}
        if found:
            heads[name] = found
    return heads


def _inference_copy(backbone: DinoVisionTransformer) -> DinoVisionTransformer:
    """The backbone without stochastic depth, the form exports keep."""
    clean = DinoVisionTransformer(backbone.config.replace(drop_path_rate=0.0))
    clean.load_state_dict(backbone.state_dict())
    return clean


def teacher_release_state(teacher: torch.nn.Module) -> dict[str, Any]:
    """The MedDINOv3 release layout (the teacher's own keys are already `backbone.*` / `*_head.*`),
    with the backbone's architecture beside it."""
    architecture = json.dumps(teacher.backbone.config.replace(drop_path_rate=0.0).to_dict())
    return {"teacher": {k: v.detach().cpu().clone() for k, v in teacher.state_dict().items()},
            CONFIG_METADATA_KEY: architecture}


def export_teacher(teacher: torch.nn.Module, folder: str | Path) -> dict[str, Path]:
    """Write `folder/teacher_checkpoint.pth` (release layout) and `folder/backbone.safetensors` (+ .json), atomically."""
    folder = Path(folder)
    release = atomic_write(folder / TEACHER_EXPORT, lambda tmp: torch.save(teacher_release_state(teacher), tmp))
    safetensors = save_backbone(_inference_copy(teacher.backbone), folder / BACKBONE_EXPORT)
    return {"teacher_checkpoint": release, "backbone": safetensors}


def snapshot_folder(output_dir: str | Path, iteration: int) -> Path:
    """Where a run keeps its EMA teacher after `iteration` iterations (run.keep_teacher_at)."""
    return Path(output_dir) / SNAPSHOT_DIR / f"iteration_{iteration}"
