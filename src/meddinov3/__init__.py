"""MedDINOv3: DINOv3 vision transformers adapted to CT/MRI segmentation."""

from meddinov3.backbone import DinoVisionTransformer, build_backbone, load_backbone

__all__ = ["DinoVisionTransformer", "build_backbone", "load_backbone"]
__version__ = "0.1.0"
