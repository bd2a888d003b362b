"""Architecture description of a DINOv3 ViT, as plain data.

One dataclass holds everything needed to rebuild a backbone. It is what presets define, what
checkpoint readers infer from tensors, and what exports store next to the weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, Optional

import torch

RopeNormalize = Literal["min", "max", "separate"]
FfnKind = Literal["mlp", "swiglu", "swiglu32", "swiglu64", "swiglu128"]

ROPE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
SWIGLU_ALIGN = {"swiglu": 8, "swiglu32": 32, "swiglu64": 64, "swiglu128": 128}


@dataclass
class BackboneConfig:
    patch_size: int = 16
    in_chans: int = 3
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    ffn_layer: FfnKind = "mlp"
    ffn_ratio: float = 4.0
    # Explicit FFN width; wins over ffn_ratio. Set by checkpoint inference when no ratio
    # reproduces the stored width.
    ffn_hidden_dim: Optional[int] = None
    ffn_bias: bool = True
    proj_bias: bool = True
    qkv_bias: bool = True
    # DINOv3 keeps a key bias tensor but multiplies it by a stored 0/1 mask: keys get no bias.
    mask_k_bias: bool = True
    layerscale_init: Optional[float] = 1e-5
    norm_layer: Literal["layernorm", "rmsnorm"] = "layernorm"
    norm_eps: float = 1e-5
    n_storage_tokens: int = 4
    drop_path_rate: float = 0.0
    rope_base: Optional[float] = 100.0
    rope_min_period: Optional[float] = None
    rope_max_period: Optional[float] = None
    rope_normalize_coords: RopeNormalize = "separate"
    rope_shift_coords: Optional[float] = None
    rope_jitter_coords: Optional[float] = None
    rope_rescale_coords: Optional[float] = 2.0
    rope_dtype: Literal["fp32", "fp16", "bf16"] = "fp32"
    untie_cls_and_patch_norms: bool = False
    untie_global_and_local_cls_norm: bool = False

    def __post_init__(self) -> None:
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.head_dim % 4:
            raise ValueError(f"2D RoPE needs a head dimension divisible by 4, got {self.head_dim}")
        if (self.rope_base is None) == (self.rope_min_period is None or self.rope_max_period is None):
            raise ValueError("RoPE needs either rope_base or both rope_min_period and rope_max_period")
        if self.rope_dtype not in ROPE_DTYPES:
            raise ValueError(f"rope_dtype must be one of {sorted(ROPE_DTYPES)}, got {self.rope_dtype!r}")
        if self.ffn_layer != "mlp" and self.ffn_layer not in SWIGLU_ALIGN:
            raise ValueError(f"unknown ffn_layer {self.ffn_layer!r}")

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def ffn_width(self) -> int:
        """Hidden width of the FFN, with DINOv3's SwiGLU rounding (2/3 of the ratio, aligned up)."""
        if self.ffn_hidden_dim is not None:
            return self.ffn_hidden_dim
        hidden = int(self.embed_dim * self.ffn_ratio)
        if self.ffn_layer == "mlp":
            return hidden
        align = SWIGLU_ALIGN[self.ffn_layer]
        hidden = int(hidden * 2 / 3)
        return (hidden + align - 1) // align * align

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "BackboneConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown backbone config keys: {unknown}")
        return cls(**values)

    def replace(self, **overrides: Any) -> "BackboneConfig":
        return BackboneConfig.from_dict({**self.to_dict(), **overrides})
