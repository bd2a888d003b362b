"""nnU-Net's folder environment variables and process-count settings, checked up front.

nnU-Net reads its folders from environment variables and fails deep inside a job when one is
missing; checking them before any work starts turns that into one clear message.
"""

from __future__ import annotations

import os
from pathlib import Path

from meddinov3.errors import InputError

RAW = "nnUNet_raw"
PREPROCESSED = "nnUNet_preprocessed"
RESULTS = "nnUNet_results"

# nnU-Net reads these once, when its modules are imported.
_PROCESS_VARIABLES = ("nnUNet_def_n_proc", "nnUNet_n_proc_DA")


class NnUNetSetupError(InputError, RuntimeError):
    """The nnU-Net environment (folders, dataset) is not what a command needs."""


def require_folders(*names: str) -> dict[str, Path]:
    """The named nnU-Net folder variables as paths; one error naming every unset variable."""
    missing = [name for name in names if not os.environ.get(name)]
    if missing:
        lines = "\n".join(f"  export {name}=/path/to/{name.removeprefix('nnUNet_')}" for name in missing)
        raise NnUNetSetupError(
            f"nnU-Net needs the environment variable(s) {', '.join(missing)} set to a folder, e.g.\n{lines}"
        )
    return {name: Path(os.environ[name]) for name in names}


def set_process_counts(num_processes: int | None) -> None:
    """Set nnU-Net's worker counts (preprocessing/export pools and augmentation workers).

    Must run before nnunetv2 is imported. `None` keeps what the environment says. A value of 0
    runs augmentation in the main process; nnU-Net's pools always get at least one worker.
    """
    if num_processes is None:
        return
    os.environ["nnUNet_def_n_proc"] = str(max(1, num_processes))
    os.environ["nnUNet_n_proc_DA"] = str(max(0, num_processes))
