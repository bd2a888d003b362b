"""nnU-Net v2 trainers for the MedDINOv3 methods: thin subclasses of nnU-Net's own trainer.

Everything not listed here (data loading, augmentation, Dice + CE loss, foreground
oversampling, checkpoints, validation, DDP) is nnU-Net's. What differs, read from the method's
`Recipe` (`methods.py`) and network spec:
- the network: a DINOv3 ViT with a (multi-scale) Primus decoder, built from the network spec
  stored in the plans (see `spec.py`), with pretrained encoder weights loaded strictly (the
  release recipe of the DINOv3 arms: non-strictly, as the release does);
- the optimiser and its schedule: the recipe's (separate encoder and decoder learning rates for
  the pretrained arms, each decaying to zero over the epochs), every value with its source there;
- no deep supervision;
- numeric precision (bf16 by default on GPUs that have it, no gradient scaler; fp16 with nnU-Net's
  scaler; fp32), recorded in the spec and applied on every device: nnU-Net itself autocasts
  (fp16) on CUDA only.

Users of `nnUNetv2_train` reach these classes through nnU-Net's `nnUNet_extTrainer` plugin
folder (see `plugin/`); `meddinov3 train` constructs them directly.
"""

from __future__ import annotations

import os
from typing import ClassVar

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn

from meddinov3.nnunet.checkpoints import AtomicCheckpoints
from meddinov3.nnunet.methods import Recipe, get_method
from meddinov3.nnunet.network import build_network, freeze_parts, load_pretrained_encoder, unwrap
from meddinov3.nnunet.plans import resolved_configuration
from meddinov3.nnunet.optim import PolyLRPerGroup, build_optimizer
from meddinov3.precision import around_nnunet, autocast, resolve_precision
from meddinov3.nnunet.spec import (
    RECIPE_ENV,
    WEIGHTS_ENV,
    NetworkSpec,
    NetworkSpecError,
    attach_spec,
    build_spec,
    check_patch_size,
    recorded_spec,
    spec_in_plans,
)


class RecipeTrainer(AtomicCheckpoints, nnUNetTrainer):
    """A trainer whose optimiser, schedule, sampling and supervision come from its method's `Recipe`."""

    method_name: ClassVar[str]

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),
    ):
        recipe = self.recipe_for_plans(plans, configuration)
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.recipe = recipe
        # nnU-Net's knobs, which configure_optimizers reads (a caller may change them before initialize).
        self.initial_lr = recipe.lr
        self.encoder_lr = recipe.encoder_lr
        self.weight_decay = recipe.weight_decay
        self.oversample_foreground_percent = recipe.oversample_foreground
        self.enable_deep_supervision = recipe.deep_supervision

    @classmethod
    def recipe_for_plans(cls, plans: dict, configuration: str) -> Recipe:
        """The method's recipe (called before nnU-Net copies the plans, so it may add to them)."""
        return get_method(cls.method_name).recipe

    def configure_optimizers(self) -> tuple[torch.optim.Optimizer, PolyLRPerGroup]:
        optimizer = build_optimizer(
            unwrap(self.network), self.recipe, self.initial_lr, self.encoder_lr, self.weight_decay,
            fused=self.device.type == "cuda",
        )
        return optimizer, PolyLRPerGroup(optimizer, self.num_epochs, self.recipe.poly_exponent)

    def set_deep_supervision_enabled(self, enabled: bool) -> None:
        """Single-output networks; nothing to switch."""


class ViTSegmentationTrainer(RecipeTrainer):
    """Shared by the MedDINOv3 methods; subclasses only name their method."""

    # Off when a checkpoint is about to overwrite every weight anyway (resuming).
    load_pretrained_weights = True

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),
    ):
        # The precision this device runs goes into the spec before nnU-Net copies the plans, so
        # validation and prediction of the saved model use it too.
        spec = self._spec_for(plans, configuration)
        spec.precision = resolve_precision(spec.precision, device)
        attach_spec(plans, configuration, spec)
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.precision = spec.precision
        self.grad_scaler = torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None

    @classmethod
    def recipe_for_plans(cls, plans: dict, configuration: str) -> Recipe:
        # The spec must be in the plans before nnU-Net copies them: it is what gets saved with
        # the model and what the static network builder sees. It names the recipe switch.
        return cls._spec_for(plans, configuration).training_recipe()

    @property
    def network_spec(self) -> NetworkSpec:
        return spec_in_plans(self.plans_manager.plans, self.configuration_name)

    @classmethod
    def _spec_for(cls, plans: dict, configuration: str) -> NetworkSpec:
        spec = spec_in_plans(plans, configuration)
        if spec is None:
            spec = build_spec(
                get_method(cls.method_name),
                weights=os.environ.get(WEIGHTS_ENV) or None,
                recipe=os.environ.get(RECIPE_ENV) or "default",
            )
            attach_spec(plans, configuration, spec)
        elif spec.method != cls.method_name:
            raise NetworkSpecError(
                f"the plans hold a network spec for method {spec.method!r}, but {cls.__name__} trains "
                f"{cls.method_name!r}"
            )
        check_patch_size(resolved_configuration(plans, configuration)["patch_size"], spec, configuration)
        return spec

    @staticmethod
    def build_network_architecture(
        plans_manager: PlansManager,
        configuration_manager: ConfigurationManager,
        num_input_channels: int,
        num_output_channels: int,
        enable_deep_supervision: bool = True,
    ) -> nn.Module:
        spec = recorded_spec(configuration_manager.configuration, configuration_manager.patch_size)
        network = build_network(spec, num_input_channels, num_output_channels)
        freeze_parts(network, spec.training_recipe().frozen)
        return network

    def initialize(self) -> None:
        super().initialize()
        self.print_to_log_file(f"Recipe {self.network_spec.recipe!r} of {self.method_name}: {self.recipe}")
        if self.load_pretrained_weights and self.network_spec.pretrained_weights:
            self.load_pretrained_encoder(unwrap(self.network))

    @property
    def encoder_input_channels(self) -> int | None:
        """Input channels the pretrained patch embedding is adapted to (None: kept as it is)."""
        return self.num_input_channels

    def load_pretrained_encoder(self, network: nn.Module) -> None:
        source = self.network_spec.pretrained_weights
        dropped = load_pretrained_encoder(
            network.dino_encoder, self.network_spec, self.encoder_input_channels, strict=self.recipe.strict_loading
        )
        self.print_to_log_file(f"Loaded pretrained encoder weights from {source}")
        if dropped:
            self.print_to_log_file(
                f"Loaded non-strictly, as the release does: dropped {len(dropped)} tensors of {source} that its "
                f"network lacks: {', '.join(dropped)}"
            )

    def train_step(self, batch: dict) -> dict:
        """nnU-Net's step at `self.precision` on every device. nnU-Net's own autocasts (in fp16)
        on CUDA only; here autocast covers the forward pass and the loss everywhere, the backward
        pass stays outside it, and only fp16 goes through the gradient scaler."""
        data = batch["data"].to(self.device, non_blocking=True)
        target = batch["target"].to(self.device, non_blocking=True)  # one tensor: no deep supervision
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.precision, self.device):
            loss = self.loss(self.network(data), target)
        if self.grad_scaler is None:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.recipe.grad_clip)
            self.optimizer.step()
        else:
            self.grad_scaler.scale(loss).backward()
            self.grad_scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.recipe.grad_clip)
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        return {"loss": loss.detach().cpu().numpy()}

    def validation_step(self, batch: dict) -> dict:
        with around_nnunet(self.precision, self.device):
            return super().validation_step(batch)

    def perform_actual_validation(self, save_probabilities: bool = False) -> None:
        with around_nnunet(self.precision, self.device):
            super().perform_actual_validation(save_probabilities)


class MedDINOv3Trainer(ViTSegmentationTrainer):
    method_name = "meddinov3"


class DINOv3Trainer(ViTSegmentationTrainer):
    method_name = "dinov3"


class DINOv3SingleScaleTrainer(ViTSegmentationTrainer):
    method_name = "dinov3-single"


class ViTScratchTrainer(ViTSegmentationTrainer):
    method_name = "scratch"


class AtomicNnUNetTrainer(AtomicCheckpoints, nnUNetTrainer):
    """nnU-Net's own trainer (the `nnunet` method), with atomic checkpoint files."""


# Under nnU-Net's class name: the results folder and the trainer name in its checkpoints are the
# ones nnU-Net's own tools expect.
AtomicNnUNetTrainer.__name__ = nnUNetTrainer.__name__
