"""nnU-Net v2 trainers for the paper's baselines: thin subclasses, everything else is nnU-Net's.

- `SegFormerTrainer`: SegFormer-B2 from scratch; AdamW at lr 5e-5 (paper) with SegFormer's own
  weight decay 0.01 (the paper states only the optimiser and rate); nnU-Net's poly schedule.
- `DinoUNetTrainer`: Dino U-Net on a frozen pretrained DINOv3 ViT; nnU-Net's own optimiser and
  schedule (SGD, Nesterov momentum 0.99, lr 1e-2, weight decay 3e-5, poly 0.9) on the trainable
  parts. The network spec (backbone architecture, interaction blocks) is stored in the plans and
  the pretrained encoder loaded strictly, exactly as for the MedDINOv3 trainers.
Neither network follows nnU-Net's plans' scales, so both train without deep supervision. Both
write their checkpoint files atomically (`AtomicCheckpoints`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn

from meddinov3.baselines.dino_unet import build_dino_unet
from meddinov3.baselines.segformer import PAPER_VARIANT, build_segformer
from meddinov3.backbone import build_backbone
from meddinov3.nnunet.checkpoints import AtomicCheckpoints
from meddinov3.nnunet.network import unwrap
from meddinov3.nnunet.spec import recorded_spec
from meddinov3.nnunet.trainers import ViTSegmentationTrainer


@dataclass(frozen=True)
class OptimizerRecipe:
    lr: float
    weight_decay: float


SEGFORMER_RECIPE = OptimizerRecipe(lr=5e-5, weight_decay=1e-2)
# nnU-Net's defaults (nnUNetTrainer), restated so that the Dino U-Net trainer does not inherit the
# MedDINOv3 recipe of its parent class.
NNUNET_RECIPE = OptimizerRecipe(lr=1e-2, weight_decay=3e-5)
NNUNET_MOMENTUM = 0.99


def trainable(network: nn.Module) -> list[nn.Parameter]:
    return [p for p in unwrap(network).parameters() if p.requires_grad]


class SegFormerTrainer(AtomicCheckpoints, nnUNetTrainer):
    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),
    ):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = SEGFORMER_RECIPE.lr
        self.weight_decay = SEGFORMER_RECIPE.weight_decay
        self.enable_deep_supervision = False

    @staticmethod
    def build_network_architecture(
        plans_manager: PlansManager,
        configuration_manager: ConfigurationManager,
        num_input_channels: int,
        num_output_channels: int,
        enable_deep_supervision: bool = True,
    ) -> nn.Module:
        return build_segformer(num_output_channels, num_input_channels, PAPER_VARIANT)

    def configure_optimizers(self) -> tuple[torch.optim.Optimizer, PolyLRScheduler]:
        optimizer = torch.optim.AdamW(trainable(self.network), lr=self.initial_lr, weight_decay=self.weight_decay)
        return optimizer, PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs)

    def set_deep_supervision_enabled(self, enabled: bool) -> None:
        """SegFormer has a single output; nothing to switch."""


class DinoUNetTrainer(ViTSegmentationTrainer):
    method_name = "dino-unet"

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),
    ):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = NNUNET_RECIPE.lr
        self.weight_decay = NNUNET_RECIPE.weight_decay

    @staticmethod
    def build_network_architecture(
        plans_manager: PlansManager,
        configuration_manager: ConfigurationManager,
        num_input_channels: int,
        num_output_channels: int,
        enable_deep_supervision: bool = True,
    ) -> nn.Module:
        spec = recorded_spec(
            configuration_manager.configuration, configuration_manager.patch_size, DinoUNetTrainer.method_name
        )
        backbone = build_backbone(spec.backbone_config())
        return build_dino_unet(backbone, num_output_channels, num_input_channels, spec.interaction_layers)

    def configure_optimizers(self) -> tuple[torch.optim.Optimizer, PolyLRScheduler]:
        optimizer = torch.optim.SGD(
            trainable(self.network), self.initial_lr, weight_decay=self.weight_decay,
            momentum=NNUNET_MOMENTUM, nesterov=True,
        )
        return optimizer, PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs)

    def set_deep_supervision_enabled(self, enabled: bool) -> None:
        """Dino U-Net here has a single output; nothing to switch."""
