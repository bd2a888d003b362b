"""The training methods users compare, and the paper's fine-tuning recipe, as data.

A method names an nnU-Net trainer class and what it needs: which backbone architecture, single-
or multi-scale decoding, whether pretrained weights are required, and the encoder learning rate.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FineTuneRecipe:
    """Hyperparameters shared by every ViT method (paper, "Implementation details")."""

    decoder_lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 5e-2
    poly_exponent: float = 1.0  # linear decay to zero over the epochs
    drop_path_rate: float = 0.2
    oversample_foreground: float = 0.33
    deep_supervision: bool = False


RECIPE = FineTuneRecipe()


@dataclass(frozen=True)
class Method:
    name: str
    trainer: str
    description: str
    # None: not a ViT (nnU-Net's own U-Net with its own recipe).
    backbone_preset: str | None = None
    multiscale: bool = True
    encoder_lr: float | None = None
    needs_weights: bool = False
    default_configuration: str = "2d"
    # Module that defines `trainer` when it is not one of meddinov3.nnunet.trainers' own classes.
    trainer_module: str | None = None


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            name="meddinov3",
            trainer="MedDINOv3Trainer",
            description="multi-scale Primus on the CT-3M pretrained MedDINOv3 ViT-B/16 (the paper's model)",
            backbone_preset="meddinov3_vitb16",
            encoder_lr=3e-5,
            needs_weights=True,
            default_configuration="2d_896",
        ),
        Method(
            name="dinov3",
            trainer="DINOv3Trainer",
            description="multi-scale Primus on the official DINOv3 weights",
            backbone_preset="vitb16",
            encoder_lr=1e-4,
            needs_weights=True,
            default_configuration="2d_896",
        ),
        Method(
            name="dinov3-single",
            trainer="DINOv3SingleScaleTrainer",
            description="single-scale Primus (last block only) on the official DINOv3 weights",
            backbone_preset="vitb16",
            multiscale=False,
            encoder_lr=1e-4,
            needs_weights=True,
            default_configuration="2d_896",
        ),
        Method(
            name="scratch",
            trainer="ViTScratchTrainer",
            description="single-scale Primus on a randomly initialised ViT (the paper's ablation baseline)",
            backbone_preset="vitb16",
            multiscale=False,
            # Nothing pretrained to preserve: the encoder trains at the decoder's rate, as in Primus.
            encoder_lr=RECIPE.decoder_lr,
            default_configuration="2d_896",
        ),
        Method(
            name="nnunet",
            trainer="nnUNetTrainer",
            description="nnU-Net's default 2D U-Net and recipe (baseline)",
        ),
        Method(
            name="segformer",
            trainer="SegFormerTrainer",
            description="SegFormer-B2 from scratch, AdamW lr 5e-5 (baseline)",
            trainer_module="meddinov3.baselines.trainers",
        ),
        Method(
            name="dino-unet",
            trainer="DinoUNetTrainer",
            description="Dino U-Net: frozen DINOv3 ViT-B/16 + adapter + U-Net decoder, nnU-Net recipe (baseline)",
            backbone_preset="vitb16",
            needs_weights=True,
            trainer_module="meddinov3.baselines.trainers",
        ),
    )
}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def method_of_trainer(trainer_name: str) -> Method | None:
    return next((m for m in METHODS.values() if m.trainer == trainer_name), None)
