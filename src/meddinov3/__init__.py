"""MedDINOv3: DINOv3 vision transformers adapted to CT/MRI segmentation."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["DinoVisionTransformer", "Segmenter", "build_backbone", "load_backbone"]


def __getattr__(name: str):
    # Lazy, so that light entry points (evaluation workers, `meddinov3 --help`) do not pay for torch.
    if name == "Segmenter":
        from meddinov3.nnunet.segmenter import Segmenter

        return Segmenter
    if name in __all__:
        from meddinov3 import backbone

        return getattr(backbone, name)
    raise AttributeError(f"module 'meddinov3' has no attribute {name!r}")
