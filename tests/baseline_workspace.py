"""A small nnU-Net workspace shared by the baseline and comparison tests.

One synthetic CT dataset (5 labelled 8x64x64 cases, enough for nnU-Net's 5-fold split, plus one
test case), planned once with nnU-Net's 2D configuration; trainings are 1 epoch of 2 iterations
on CPU. Everything is idempotent and lives under one folder of the pytest session, so whichever
test module runs first does the planning (and trainings) and the other reuses them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

DATASET_ID = 986
DATASET_NAME = "BaselineCT"
CONFIGURATION = "2d"
# Width 64: Dino U-Net's adapter has 16 heads on half the width.
TINY_BACKBONE = dict(embed_dim=64, num_heads=2, depth=4)
QUICK_TRAINING = dict(epochs=1, iterations_per_epoch=2, val_iterations_per_epoch=1)


@dataclass(frozen=True)
class Workspace:
    root: Path
    dataset: str  # DatasetXXX_Name
    weights: Path  # a tiny randomly initialised DINOv3 backbone (Dino U-Net needs pretrained weights)

    @property
    def raw(self) -> Path:
        return self.root / "raw" / self.dataset

    @property
    def preprocessed(self) -> Path:
        return self.root / "preprocessed" / self.dataset

    def fold_folder(self, trainer: str) -> Path:
        return self.root / "results" / self.dataset / f"{trainer}__nnUNetPlans__{CONFIGURATION}" / "fold_0"

    def method_weights(self, method: str) -> str | None:
        return str(self.weights) if method == "dino-unet" else None


def _environment(root: Path) -> dict[str, str]:
    return {
        "nnUNet_raw": str(root / "raw"),
        "nnUNet_preprocessed": str(root / "preprocessed"),
        "nnUNet_results": str(root / "results"),
        "nnUNet_def_n_proc": "1",
        # Augmentation in the main process: no worker start-up per training.
        "nnUNet_n_proc_DA": "0",
    }


def _prepare(root: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    from meddinov3.backbone import build_backbone
    from meddinov3.backbone.export import save_backbone
    from meddinov3.synth.toy_dataset import SyntheticDatasetSpec, write_synthetic_dataset

    spec = SyntheticDatasetSpec(dataset_id=DATASET_ID, name=DATASET_NAME, num_training=5, num_test=1)
    workspace = Workspace(root, spec.folder_name, root / "tiny_dinov3.safetensors")
    if not workspace.weights.is_file():
        save_backbone(build_backbone("vitb16", **TINY_BACKBONE), workspace.weights)
    if not (workspace.preprocessed / "nnUNetPlans_2d").is_dir():
        from meddinov3.nnunet.plans import plan_and_preprocess

        write_synthetic_dataset(root / "raw", spec)
        # nnU-Net's planner sets torch's thread count from this variable and rejects 0.
        with monkeypatch.context() as planning:
            planning.setenv("nnUNet_n_proc_DA", "1")
            plan_and_preprocess(DATASET_ID, sizes=(), num_processes=1)
    return workspace


@contextmanager
def baseline_workspace(base: Path) -> Iterator[Workspace]:
    """The shared workspace with nnU-Net's environment variables set while the context lasts."""
    root = base / "baseline_nnunet"
    root.mkdir(parents=True, exist_ok=True)
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name, value in _environment(root).items():
            monkeypatch.setenv(name, value)
        yield _prepare(root, monkeypatch)


def train_quickly(workspace: Workspace, method: str) -> Path:
    """Train and validate fold 0 of `method` once (1 epoch, 2 iterations); reuse it afterwards."""
    from meddinov3.nnunet.methods import get_method
    from meddinov3.nnunet.training import TrainingJob, run_training

    folder = workspace.fold_folder(get_method(method).trainer)
    if (folder / "checkpoint_final.pth").is_file() and any((folder / "validation").glob("*.nii.gz")):
        return folder
    return run_training(
        TrainingJob(
            dataset=workspace.dataset,
            method=method,
            configuration=CONFIGURATION,
            weights=workspace.method_weights(method),
            device="cpu",
            show_progress=False,
            **QUICK_TRAINING,
        )
    )

