"""Write nnU-Net training checkpoints atomically, read them without executing pickled code, resume.

nnU-Net's trainer writes `checkpoint_latest.pth` in place with `torch.save`: a kill during the
save leaves a torn file that `--continue` cannot read. `AtomicCheckpoints` writes to a temp
file and renames it over the old one, so each checkpoint file is the old one or the complete
new one. nnU-Net's own `load_checkpoint` unpickles with `weights_only=False`; these functions
read the same files with `weights_only=True` (numpy scalars in the logs allowed as plain data)
and put the state back into a trainer exactly as nnU-Net does; a resume skips a checkpoint that
cannot be read (an older run's torn file) and falls back to the next one, with a warning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from meddinov3.backbone.checkpoints import CheckpointError, read_checkpoint
from meddinov3.io import atomic_write
from meddinov3.nnunet.network import unwrap

# The order nnU-Net resumes from: a finished run can be extended, an interrupted one continues.
RESUME_ORDER = ("checkpoint_final.pth", "checkpoint_latest.pth", "checkpoint_best.pth")
_REQUIRED = ("network_weights", "init_args", "trainer_name")


class AtomicCheckpoints:
    """Mixin for nnU-Net trainers (before nnUNetTrainer in the bases): atomic checkpoint files."""

    def save_checkpoint(self, filename: str) -> None:
        save = super().save_checkpoint  # type: ignore[misc]
        if self.local_rank != 0 or self.disable_checkpointing:  # type: ignore[attr-defined]
            save(filename)  # writes nothing (and says so when checkpointing is off)
        else:
            atomic_write(filename, save)


def read_nnunet_checkpoint(path: str | Path) -> dict[str, Any]:
    checkpoint, _ = read_checkpoint(path)
    missing = [k for k in _REQUIRED if k not in checkpoint]
    if missing:
        raise CheckpointError(f"{path}: not an nnU-Net training checkpoint (missing {missing})")
    return checkpoint


def network_state(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Network weights without the `module.` prefix DDP training may leave."""
    return {k.removeprefix("module."): v for k, v in checkpoint["network_weights"].items()}


def resume_checkpoint(output_folder: str | Path, warn: Callable[[str], Any] = print) -> tuple[Path, dict] | None:
    """The first readable checkpoint in nnU-Net's resume order, read; None when there is none.

    An unreadable one (truncated, corrupt) is skipped with a warning; when every checkpoint
    there is unreadable, a CheckpointError lists them rather than starting over silently.
    Temp files left by killed saves are removed.
    """
    # Temp files of saves that a kill interrupted: never complete, never renamed into place.
    for partial in Path(output_folder).glob(".checkpoint_*.pth.*.tmp"):
        partial.unlink()
    skipped = []
    for name in RESUME_ORDER:
        candidate = Path(output_folder) / name
        if not candidate.is_file():
            continue
        try:
            checkpoint = read_nnunet_checkpoint(candidate)
        except CheckpointError as error:
            skipped.append(str(error))
            warn(f"warning: skipping an unreadable checkpoint: {error}")
            continue
        if skipped:
            warn(f"warning: resuming from the last readable checkpoint, {candidate}")
        return candidate, checkpoint
    if skipped:
        raise CheckpointError(f"{output_folder}: no readable checkpoint to continue from ({'; '.join(skipped)})")
    return None


def restore_trainer(trainer: Any, checkpoint: dict[str, Any]) -> None:
    """Load weights, optimiser, epoch, logs and best-EMA from a read checkpoint into an nnU-Net trainer."""
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
