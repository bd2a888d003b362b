"""Every trainer class of `meddinov3 train --method ...` by its name, the name a method and an
nnU-Net model folder give: the MedDINOv3 trainers (`trainers.py`), the baselines'
(`baseline_trainers.py`) and nnU-Net's default."""

from __future__ import annotations

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from meddinov3.nnunet.baseline_trainers import DinoUNetTrainer, SegFormerTrainer
from meddinov3.nnunet.trainers import (
    AtomicNnUNetTrainer,
    DINOv3SingleScaleTrainer,
    DINOv3Trainer,
    MedDINOv3Trainer,
    ViTScratchTrainer,
)

TRAINERS: dict[str, type[nnUNetTrainer]] = {
    cls.__name__: cls
    for cls in (AtomicNnUNetTrainer, MedDINOv3Trainer, DINOv3Trainer, DINOv3SingleScaleTrainer, ViTScratchTrainer,
                SegFormerTrainer, DinoUNetTrainer)
}


def trainer_class(name: str) -> type[nnUNetTrainer]:
    """A trainer class by name: this package's and nnU-Net's default without importing every
    nnU-Net trainer module (one needs timm); any other name through nnU-Net's own search."""
    if name in TRAINERS:
        return TRAINERS[name]
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    return recursive_find_trainer_class_by_name(name)
