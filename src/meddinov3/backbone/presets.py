"""Every official DINOv3 ViT and the MedDINOv3 ViT-B/16, as configuration data.

Numbers from the public DINOv3 hub definitions and the MedDINOv3 model card.
"""

from __future__ import annotations

from meddinov3.backbone.config import BackboneConfig

# The DINOv3 release recipe shared by all official ViTs.
_DINOV3 = dict(
    patch_size=16,
    qkv_bias=True,
    mask_k_bias=True,
    layerscale_init=1e-5,
    norm_layer="layernorm",
    norm_eps=1e-5,
    n_storage_tokens=4,
    rope_base=100.0,
    rope_normalize_coords="separate",
    rope_rescale_coords=2.0,
    rope_dtype="fp32",
)

PRESETS: dict[str, dict] = {
    "vits16": {**_DINOV3, "embed_dim": 384, "depth": 12, "num_heads": 6, "ffn_ratio": 4.0, "ffn_layer": "mlp"},
    "vits16plus": {**_DINOV3, "embed_dim": 384, "depth": 12, "num_heads": 6, "ffn_ratio": 6.0, "ffn_layer": "swiglu"},
    "vitb16": {**_DINOV3, "embed_dim": 768, "depth": 12, "num_heads": 12, "ffn_ratio": 4.0, "ffn_layer": "mlp"},
    "vitl16": {**_DINOV3, "embed_dim": 1024, "depth": 24, "num_heads": 16, "ffn_ratio": 4.0, "ffn_layer": "mlp"},
    "vitl16plus": {**_DINOV3, "embed_dim": 1024, "depth": 24, "num_heads": 16, "ffn_ratio": 6.0, "ffn_layer": "swiglu"},
    "vith16plus": {**_DINOV3, "embed_dim": 1280, "depth": 32, "num_heads": 20, "ffn_ratio": 6.0, "ffn_layer": "swiglu"},
    "vit7b16": {
        **_DINOV3,
        "embed_dim": 4096,
        "depth": 40,
        "num_heads": 32,
        "ffn_ratio": 3.0,
        "ffn_layer": "swiglu64",
        "qkv_bias": False,
        "untie_global_and_local_cls_norm": True,
    },
    # MedDINOv3 (model card): DINOv3 training-code defaults, i.e. no qkv bias, LayerNorm eps 1e-6,
    # RoPE periods in bfloat16 and no coordinate rescaling.
    "meddinov3_vitb16": {
        **_DINOV3,
        "embed_dim": 768,
        "depth": 12,
        "num_heads": 12,
        "ffn_ratio": 4.0,
        "ffn_layer": "mlp",
        "qkv_bias": False,
        "norm_eps": 1e-6,
        "rope_rescale_coords": None,
        "rope_dtype": "bf16",
    },
}


def preset_config(name: str, **overrides) -> BackboneConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown backbone preset {name!r}; choose one of {sorted(PRESETS)}")
    return BackboneConfig.from_dict({**PRESETS[name], **overrides})
