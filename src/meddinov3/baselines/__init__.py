"""The paper's comparison baselines as networks: SegFormer and Dino U-Net.

Their nnU-Net trainers are in `meddinov3.nnunet.baseline_trainers`, beside the other trainers.
"""

from meddinov3.baselines.dino_unet import DinoUNet, build_dino_unet
from meddinov3.baselines.segformer import SegFormer, build_segformer

__all__ = ["DinoUNet", "SegFormer", "build_dino_unet", "build_segformer"]
