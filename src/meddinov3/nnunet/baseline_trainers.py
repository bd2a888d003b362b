"""nnU-Net v2 trainers for the paper's baselines: thin subclasses, everything else is nnU-Net's.

Both read their optimiser, schedule and freezing from the method's `Recipe`
(`meddinov3.nnunet.methods`, every value with its source in the release's trainers):
- `SegFormerTrainer`: the release's MiT-B2 SegFormer from scratch (recipe `segformer`).
- `DinoUNetTrainer`: Dino U-Net on a frozen pretrained DINOv3 ViT (recipe `dino-unet`). The
  network spec (backbone architecture, interaction blocks, recipe switch) is stored in the plans
  and the pretrained encoder loaded strictly, as for the MedDINOv3 trainers; its release recipe
  then re-randomises the encoder's patch embedding.
Neither network follows nnU-Net's plans' scales, so both train without deep supervision. Both
write their checkpoint files atomically (`AtomicCheckpoints`, through `RecipeTrainer`).
"""

from __future__ import annotations

from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn

from meddinov3.backbone import build_backbone
from meddinov3.baselines.dino_unet import build_dino_unet
from meddinov3.baselines.segformer import build_segformer
from meddinov3.baselines.unet_decoder import NNUNET_WIDTHS
from meddinov3.nnunet.network import freeze_parts
from meddinov3.nnunet.spec import recorded_spec
from meddinov3.nnunet.trainers import RecipeTrainer, ViTSegmentationTrainer


class SegFormerTrainer(RecipeTrainer):
    method_name = "segformer"

    @staticmethod
    def build_network_architecture(
        plans_manager: PlansManager,
        configuration_manager: ConfigurationManager,
        num_input_channels: int,
        num_output_channels: int,
        enable_deep_supervision: bool = True,
    ) -> nn.Module:
        return build_segformer(num_output_channels, num_input_channels)


def decoder_layout(configuration_manager: ConfigurationManager) -> tuple[tuple[int, ...], int]:
    """The first four `features_per_stage` of the plans and their decoder convs per stage (RECIPES 3.3-3.4)."""
    kwargs = configuration_manager.network_arch_init_kwargs or {}
    widths = tuple(kwargs.get("features_per_stage", NNUNET_WIDTHS))[: len(NNUNET_WIDTHS)]
    convs = kwargs.get("n_conv_per_stage_decoder", 2)
    return widths, convs[0] if isinstance(convs, (list, tuple)) else convs


class DinoUNetTrainer(ViTSegmentationTrainer):
    method_name = "dino-unet"

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
        widths, convs = decoder_layout(configuration_manager)
        backbone = build_backbone(spec.backbone_config())
        network = build_dino_unet(backbone, num_output_channels, spec.interaction_layers, widths, convs)
        freeze_parts(network, spec.training_recipe().frozen)
        return network

    @property
    def encoder_input_channels(self) -> int | None:
        """The image is tiled or cut to three channels; the patch embedding stays the pretrained one."""
        return None

    def load_pretrained_encoder(self, network: nn.Module) -> None:
        super().load_pretrained_encoder(network)
        if self.recipe.init_reaches_frozen_encoder:
            network.reinit_encoder_convs()
            self.print_to_log_file(
                "Release recipe: the frozen encoder's patch embedding re-initialised (He-normal, zero bias), as the "
                "release's initialisation does"
            )
