"""Conversion between this package's backbone layout and Hugging Face `DINOv3ViTModel`.

Only tensors and the config.json fields move; `transformers` itself is not needed here.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import Tensor

from meddinov3.backbone.config import BackboneConfig
from meddinov3.backbone.rope import rope_periods
from meddinov3.errors import InputError

HF_MODEL_TYPE = "dinov3_vit"
_SWIGLU_TO_HF = {"w1": "gate_proj", "w2": "up_proj", "w3": "down_proj"}
_MLP_TO_HF = {"fc1": "up_proj", "fc2": "down_proj"}
_BLOCK_TO_HF = {
    "norm1": "norm1",
    "norm2": "norm2",
    "attn.proj": "attention.o_proj",
    "ls1.gamma": "layer_scale1.lambda1",
    "ls2.gamma": "layer_scale2.lambda1",
}


class HFConversionError(InputError, ValueError):
    pass


def is_hf_state_dict(state_dict: dict[str, Tensor]) -> bool:
    return "embeddings.patch_embeddings.weight" in state_dict


def hf_config_from_backbone(config: BackboneConfig) -> dict[str, Any]:
    """The config.json of the equivalent Hugging Face model; errors on features it lacks."""
    unsupported = []
    if config.norm_layer != "layernorm":
        unsupported.append("RMSNorm")
    if config.untie_cls_and_patch_norms or config.untie_global_and_local_cls_norm:
        unsupported.append("untied CLS/patch norms")
    if config.rope_base is None:
        unsupported.append("RoPE min/max periods")
    if config.rope_normalize_coords != "separate":
        unsupported.append(f"RoPE coordinate normalisation {config.rope_normalize_coords!r}")
    if config.rope_dtype != "fp32":
        unsupported.append(f"RoPE computed in {config.rope_dtype} (Hugging Face computes it in float32)")
    if config.ffn_bias is False or config.proj_bias is False:
        unsupported.append("bias-free FFN/projection")
    if unsupported:
        raise HFConversionError("the Hugging Face DINOv3ViT model cannot represent: " + ", ".join(unsupported))
    return {
        "model_type": HF_MODEL_TYPE,
        "architectures": ["DINOv3ViTModel"],
        "hidden_size": config.embed_dim,
        "intermediate_size": config.ffn_width,
        "num_hidden_layers": config.depth,
        "num_attention_heads": config.num_heads,
        "hidden_act": "gelu" if config.ffn_layer == "mlp" else "silu",
        "use_gated_mlp": config.ffn_layer != "mlp",
        "layer_norm_eps": config.norm_eps,
        "layerscale_value": config.layerscale_init if config.layerscale_init is not None else 1.0,
        "rope_theta": config.rope_base,
        "patch_size": config.patch_size,
        "num_channels": config.in_chans,
        "image_size": 224,
        "query_bias": config.qkv_bias,
        "key_bias": config.qkv_bias and not config.mask_k_bias,
        "value_bias": config.qkv_bias,
        "proj_bias": config.proj_bias,
        "mlp_bias": config.ffn_bias,
        "num_register_tokens": config.n_storage_tokens,
        "pos_embed_shift": config.rope_shift_coords,
        "pos_embed_jitter": config.rope_jitter_coords,
        "pos_embed_rescale": config.rope_rescale_coords,
        "drop_path_rate": config.drop_path_rate,
    }


def backbone_config_from_hf(hf: dict[str, Any]) -> BackboneConfig:
    if hf.get("model_type", HF_MODEL_TYPE) != HF_MODEL_TYPE:
        raise HFConversionError(f"config.json describes a {hf.get('model_type')!r} model, not {HF_MODEL_TYPE!r}")
    gated = bool(hf.get("use_gated_mlp", False))
    return BackboneConfig(
        patch_size=hf.get("patch_size", 16),
        in_chans=hf.get("num_channels", 3),
        embed_dim=hf["hidden_size"],
        depth=hf["num_hidden_layers"],
        num_heads=hf["num_attention_heads"],
        ffn_layer="swiglu" if gated else "mlp",
        ffn_hidden_dim=hf["intermediate_size"],
        ffn_bias=hf.get("mlp_bias", True),
        proj_bias=hf.get("proj_bias", True),
        qkv_bias=hf.get("query_bias", True),
        mask_k_bias=not hf.get("key_bias", False),
        layerscale_init=hf.get("layerscale_value", 1.0),
        norm_eps=hf.get("layer_norm_eps", 1e-5),
        n_storage_tokens=hf.get("num_register_tokens", 0),
        drop_path_rate=hf.get("drop_path_rate", 0.0),
        rope_base=hf.get("rope_theta", 100.0),
        rope_shift_coords=hf.get("pos_embed_shift"),
        rope_jitter_coords=hf.get("pos_embed_jitter"),
        rope_rescale_coords=hf.get("pos_embed_rescale"),
        rope_dtype="fp32",
    )


def to_hf_state_dict(state_dict: dict[str, Tensor], config: BackboneConfig) -> dict[str, Tensor]:
    """Our keys -> Hugging Face keys (the layout of the published DINOv3 HF checkpoints)."""
    c = config.embed_dim
    ffn_names = _MLP_TO_HF if config.ffn_layer == "mlp" else _SWIGLU_TO_HF
    out = {
        "embeddings.cls_token": state_dict["cls_token"],
        "embeddings.mask_token": state_dict["mask_token"].reshape(1, 1, c),
        "embeddings.register_tokens": state_dict.get("storage_tokens", torch.zeros(1, 0, c)),
        "embeddings.patch_embeddings.weight": state_dict["patch_embed.proj.weight"],
        "embeddings.patch_embeddings.bias": state_dict["patch_embed.proj.bias"],
        "norm.weight": state_dict["norm.weight"],
        "norm.bias": state_dict["norm.bias"],
    }
    for i in range(config.depth):
        src, dst = f"blocks.{i}.", f"layer.{i}."
        for ours, theirs in _BLOCK_TO_HF.items():
            for suffix in ("", ".weight", ".bias"):
                if src + ours + suffix in state_dict:
                    out[dst + theirs + suffix] = state_dict[src + ours + suffix]
        if config.layerscale_init is None:
            out[dst + "layer_scale1.lambda1"] = torch.ones(c)
            out[dst + "layer_scale2.lambda1"] = torch.ones(c)
        for ours, theirs in ffn_names.items():
            for suffix in (".weight", ".bias"):
                if f"{src}mlp.{ours}{suffix}" in state_dict:
                    out[f"{dst}mlp.{theirs}{suffix}"] = state_dict[f"{src}mlp.{ours}{suffix}"]
        q, k, v = state_dict[src + "attn.qkv.weight"].split(c)
        out[dst + "attention.q_proj.weight"] = q
        out[dst + "attention.k_proj.weight"] = k
        out[dst + "attention.v_proj.weight"] = v
        if config.qkv_bias:
            bias = state_dict[src + "attn.qkv.bias"]
            if config.mask_k_bias:
                bias = bias * state_dict[src + "attn.qkv.bias_mask"]
            qb, kb, vb = bias.split(c)
            out[dst + "attention.q_proj.bias"] = qb
            out[dst + "attention.v_proj.bias"] = vb
            if not config.mask_k_bias:
                out[dst + "attention.k_proj.bias"] = kb
    return {k: v.contiguous() for k, v in out.items()}


def from_hf_state_dict(hf_state: dict[str, Tensor], config: BackboneConfig) -> dict[str, Tensor]:
    """Hugging Face keys (with or without the `model.` prefix of transformers v5) -> ours."""
    hf_state = {re.sub(r"^model\.layer\.", "layer.", k): v for k, v in hf_state.items()}
    c = config.embed_dim
    out = {
        "cls_token": hf_state["embeddings.cls_token"],
        "mask_token": hf_state["embeddings.mask_token"].reshape(1, c),
        "patch_embed.proj.weight": hf_state["embeddings.patch_embeddings.weight"],
        "patch_embed.proj.bias": hf_state["embeddings.patch_embeddings.bias"],
        "rope_embed.periods": rope_periods(config, torch.float32),
        "norm.weight": hf_state["norm.weight"],
        "norm.bias": hf_state["norm.bias"],
    }
    if config.n_storage_tokens > 0:
        out["storage_tokens"] = hf_state["embeddings.register_tokens"]
    ffn_names = _MLP_TO_HF if config.ffn_layer == "mlp" else _SWIGLU_TO_HF
    for i in range(config.depth):
        ours, theirs = f"blocks.{i}.", f"layer.{i}."
        for name, hf_name in _BLOCK_TO_HF.items():
            for suffix in ("", ".weight", ".bias"):
                if theirs + hf_name + suffix in hf_state:
                    out[ours + name + suffix] = hf_state[theirs + hf_name + suffix]
        for name, hf_name in ffn_names.items():
            for suffix in (".weight", ".bias"):
                if f"{theirs}mlp.{hf_name}{suffix}" in hf_state:
                    out[f"{ours}mlp.{name}{suffix}"] = hf_state[f"{theirs}mlp.{hf_name}{suffix}"]
        attn = theirs + "attention."
        out[ours + "attn.qkv.weight"] = torch.cat(
            [hf_state[attn + p + "_proj.weight"] for p in ("q", "k", "v")], dim=0
        )
        if config.qkv_bias:
            q_bias, v_bias = hf_state[attn + "q_proj.bias"], hf_state[attn + "v_proj.bias"]
            k_bias = hf_state.get(attn + "k_proj.bias", torch.zeros_like(q_bias))
            out[ours + "attn.qkv.bias"] = torch.cat([q_bias, k_bias, v_bias])
            if config.mask_k_bias:
                out[ours + "attn.qkv.bias_mask"] = torch.cat(
                    [torch.ones(c), torch.zeros(c), torch.ones(c)]
                ).to(q_bias.dtype)
    return out
