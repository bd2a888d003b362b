"""Read nnU-Net training checkpoints without executing pickled code, and resume from them.

nnU-Net's own `load_checkpoint` unpickles with `weights_only=False`; these functions read the
same files with `weights_only=True` (numpy scalars in the logs allowed as plain data) and put
the state back into a trainer exactly as nnU-Net does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from meddinov3.backbone.checkpoints import CheckpointError, read_checkpoint
from meddinov3.nnunet.network import unwrap

# The order nnU-Net resumes from: a finished run can be extended, an interrupted one continues.
RESUME_ORDER = ("checkpoint_final.pth", "checkpoint_latest.pth", "checkpoint_best.pth")
_REQUIRED = ("network_weights", "init_args", "trainer_name")


def read_nnunet_checkpoint(path: str | Path) -> dict[str, Any]:
    checkpoint, _ = read_checkpoint(path)
    missing = [k for k in _REQUIRED if k not in checkpoint]
    if missing:
        raise CheckpointError(f"{path}: not an nnU-Net training checkpoint (missing {missing})")
    return checkpoint


def network_state(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Network weights without the `module.` prefix DDP training may leave."""
    return {k.removeprefix("module."): v for k, v in checkpoint["network_weights"].items()}


def find_resume_checkpoint(output_folder: str | Path) -> Path | None:
    for name in RESUME_ORDER:
        candidate = Path(output_folder) / name
        if candidate.is_file():
            return candidate
    return None


def restore_trainer(trainer: Any, path: str | Path) -> None:
    """Load weights, optimiser, epoch, logs and best-EMA from `path` into an nnU-Net trainer."""
    checkpoint = read_nnunet_checkpoint(path)
    if not trainer.was_initialized:
        trainer.initialize()
    unwrap(trainer.network).load_state_dict(network_state(checkpoint))
    trainer.my_init_kwargs = checkpoint["init_args"]
    trainer.current_epoch = checkpoint["current_epoch"]
    trainer.logger.load_checkpoint(checkpoint["logging"])
    trainer._best_ema = checkpoint["_best_ema"]
    trainer.inference_allowed_mirroring_axes = checkpoint.get(
        "inference_allowed_mirroring_axes", trainer.inference_allowed_mirroring_axes
    )
    trainer.optimizer.load_state_dict(checkpoint["optimizer_state"])
    if trainer.grad_scaler is not None and checkpoint.get("grad_scaler_state") is not None:
        trainer.grad_scaler.load_state_dict(checkpoint["grad_scaler_state"])
