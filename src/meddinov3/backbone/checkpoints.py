"""Read a backbone from any checkpoint layout users arrive with, safely and strictly.

Layouts: official DINOv3 state dicts; the MedDINOv3 release (`{"teacher": {"backbone.*", ...}}`);
`model` / `state_dict` / `student` wrappers; DDP `module.` and torch.compile `_orig_mod.`
prefixes; nnU-Net checkpoints (`network_weights` with `dino_encoder.*`); Hugging Face
DINOv3ViT folders or safetensors files; this package's own safetensors export.
The architecture is read from the tensors; what tensors cannot tell (LayerNorm eps, RoPE dtype and
coordinate rescaling) comes from the file when it records it (this package's exports: safetensors
metadata, or a `meddinov3_backbone_config` entry beside a release-layout `teacher`), from
config.json for Hugging Face files, else from the recipe the layout belongs to; keyword overrides
come last. A Hugging Face file and the official .pth of the same weights load as one architecture
(FFN width, LayerScale read from the tensors) and one function; the .pth's key bias values, which
DINOv3 masks out (Hugging Face stores none), are used by no forward pass.
"""

from __future__ import annotations

import json
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor

from meddinov3.backbone.config import SWIGLU_ALIGN, BackboneConfig
from meddinov3.backbone.errors import CheckpointError
from meddinov3.backbone.finite import check_finite
from meddinov3.backbone.hf import backbone_config_from_hf, from_hf_state_dict, is_hf_state_dict
from meddinov3.backbone.presets import PRESETS
from meddinov3.backbone.vit import DinoVisionTransformer

CONFIG_METADATA_KEY = "meddinov3_backbone_config"
_WRAPPER_KEYS = ("teacher", "student", "model", "state_dict", "network_weights")
_STRIP_PREFIXES = ("module.", "_orig_mod.", "backbone.", "dino_encoder.")
_HEAD_PREFIXES = ("dino_head.", "ibot_head.", "up_projection.", "head.")

# Plain data types that nnU-Net and other trainers leave in checkpoints (numpy scalars in logs).
# They rebuild numbers, never run code, so allowing them keeps weights_only loading safe.
_NP_MULTIARRAY = (np._core if hasattr(np, "_core") else np.core).multiarray
_SAFE_NUMPY_GLOBALS = [np.dtype, _NP_MULTIARRAY.scalar, _NP_MULTIARRAY._reconstruct, np.ndarray] + [
    type(np.dtype(t)) for t in ("float16", "float32", "float64", "int32", "int64", "bool")
]


def read_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Load a file or Hugging Face folder into (object, metadata) without executing pickled code.

    `path` may also name weights on the Hugging Face Hub (an alias, `hf://owner/name[@rev][/file]`
    or `owner/name`); they are fetched into the Hub cache first (see `hub.resolve_weights`).
    Every tensor must be finite (see `finite.py`).
    """
    from meddinov3.backbone.hub import resolve_weights

    path = resolve_weights(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    if path.is_dir():
        obj, metadata = _read_hf_folder(path)
    elif path.suffix == ".safetensors":
        obj, metadata = _read_safetensors(path)
    else:
        obj = _read_torch(path)
        metadata = embedded_metadata(obj)
    check_finite(obj, str(path))
    return obj, metadata


def embedded_metadata(obj: Any) -> dict[str, str]:
    """The architecture this package's release-layout exports record beside `teacher`."""
    if isinstance(obj, Mapping) and isinstance(obj.get(CONFIG_METADATA_KEY), str):
        return {CONFIG_METADATA_KEY: obj[CONFIG_METADATA_KEY]}
    return {}


def _read_torch(path: Path) -> dict[str, Any]:
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint: the file is empty")
    try:
        # torch warns about odd pickle protocols before refusing them; the error below says it all.
        with torch.serialization.safe_globals(_SAFE_NUMPY_GLOBALS), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"{path}: {_unpickling_problem(path, str(err))}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {err}") from None


def _unpickling_problem(path: Path, message: str) -> str:
    """What torch's safe unpickler refused, in words that do not suggest turning it off."""
    found = re.search(r"GLOBAL ([\w.]+)", message)
    if found:
        return (
            f"refused to load: the file contains pickled Python objects ({found.group(1)}) that could run "
            "code when unpickled. Only tensors, containers and numbers are read. Re-save the state "
            "dict alone (torch.save(model.state_dict(), ...)) or use safetensors."
        )
    with open(path, "rb") as stream:
        head = stream.read(2)
    if head[:1] == b"\x80" and head[1:] > b"\x02":
        return (
            f"refused to load: a plain pickled Python file (protocol {head[1]}), which could run code when "
            "unpickled; only torch.save checkpoints and safetensors files are read"
        )
    return "not a readable PyTorch checkpoint (truncated or corrupt?)"


def _read_safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt?): {err}") from None
    sidecar = path.parent / "config.json"
    if is_hf_state_dict(tensors) and sidecar.exists():
        metadata = {**metadata, "hf_config": sidecar.read_text(encoding="utf-8")}
    return tensors, metadata


def _read_hf_folder(folder: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    config_file = folder / "config.json"
    if not config_file.exists():
        raise CheckpointError(f"{folder}: a Hugging Face model folder needs a config.json")
    weights = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))
    if not weights:
        raise CheckpointError(f"{folder}: no *.safetensors or pytorch_model*.bin weights found")
    tensors: dict[str, Tensor] = {}
    for file in weights:
        part = _read_safetensors(file)[0] if file.suffix == ".safetensors" else _read_torch(file)
        tensors.update(part)
    return tensors, {"hf_config": config_file.read_text(encoding="utf-8")}


def extract_backbone_state(obj: Mapping[str, Any], source: str = "checkpoint") -> dict[str, Tensor]:
    """Unwrap containers and prefixes down to the backbone's own keys; heads are dropped."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: expected a dict of tensors, found {type(obj).__name__}")
    for key in _WRAPPER_KEYS:
        if key in obj and isinstance(obj[key], Mapping):
            return extract_backbone_state(obj[key], source)
    state = {}
    for key, value in obj.items():
        if not isinstance(value, Tensor):
            continue
        changed = True
        while changed:
            changed = False
            for prefix in _STRIP_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix) :], True
        if not key.startswith(_HEAD_PREFIXES):
            state[key] = value
    if not state:
        raise CheckpointError(f"{source}: no tensors found (keys: {sorted(obj)[:10]})")
    return state


def _ffn_from_width(embed_dim: int, kind: str, width: int) -> dict[str, Any]:
    """Express an FFN width as the preset-style (ffn_layer, ffn_ratio) when one reproduces it."""
    if kind == "mlp":
        return {"ffn_layer": "mlp", "ffn_ratio": width / embed_dim}
    for layer in SWIGLU_ALIGN:
        for ratio in sorted({p.get("ffn_ratio", 4.0) for p in PRESETS.values()}):
            if BackboneConfig(embed_dim=embed_dim, num_heads=1, ffn_layer=layer, ffn_ratio=ratio).ffn_width == width:
                return {"ffn_layer": layer, "ffn_ratio": ratio}
    return {"ffn_layer": "swiglu", "ffn_hidden_dim": width}


def _rope_from_periods(periods: Tensor) -> dict[str, Any]:
    p = periods.float()
    if len(p) > 1 and abs(p[0].item() - 1.0) < 1e-3:
        base = p[-1].item() ** (len(p) / (len(p) - 1))
        # bfloat16 periods give a base a little off the trained one: snap to the usual values.
        for usual in (100.0, 1000.0, 10000.0):
            if abs(base / usual - 1) < 0.02:
                base = usual
        return {"rope_base": base}
    if len(p) == 1:
        return {"rope_base": 100.0}
    return {"rope_base": None, "rope_min_period": p[0].item(), "rope_max_period": p[-1].item()}


def infer_config(state: Mapping[str, Tensor], source: str = "checkpoint") -> BackboneConfig:
    """Architecture from tensor names and shapes; non-tensor facts from the matching recipe."""
    required = ("cls_token", "patch_embed.proj.weight", "rope_embed.periods", "blocks.0.attn.qkv.weight")
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(
            f"{source}: not a DINOv3 ViT backbone: missing {missing}. First keys found: {sorted(state)[:8]}"
        )
    embed_dim = state["cls_token"].shape[-1]
    periods = state["rope_embed.periods"]
    head_dim = 4 * periods.numel()
    patch = state["patch_embed.proj.weight"]
    depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k)))
    if "blocks.0.mlp.fc1.weight" in state:
        ffn = _ffn_from_width(embed_dim, "mlp", state["blocks.0.mlp.fc1.weight"].shape[0])
        ffn_bias = "blocks.0.mlp.fc1.bias" in state
    elif "blocks.0.mlp.w1.weight" in state:
        ffn = _ffn_from_width(embed_dim, "swiglu", state["blocks.0.mlp.w1.weight"].shape[0])
        ffn_bias = "blocks.0.mlp.w1.bias" in state
    else:
        raise CheckpointError(f"{source}: block 0 has neither an MLP (fc1/fc2) nor a SwiGLU (w1/w2/w3) FFN")
    qkv_bias = "blocks.0.attn.qkv.bias" in state
    bf16_rope = periods.dtype == torch.bfloat16
    # Recipe facts tensors cannot show: MedDINOv3 checkpoints (bfloat16 RoPE) follow the DINOv3
    # training code defaults; everything else follows the official DINOv3 release.
    recipe = PRESETS["meddinov3_vitb16"] if bf16_rope else PRESETS["vitb16"]
    return BackboneConfig(
        patch_size=patch.shape[-1],
        in_chans=patch.shape[1],
        embed_dim=embed_dim,
        depth=depth,
        num_heads=embed_dim // head_dim,
        ffn_bias=ffn_bias,
        proj_bias="blocks.0.attn.proj.bias" in state,
        qkv_bias=qkv_bias,
        mask_k_bias="blocks.0.attn.qkv.bias_mask" in state if qkv_bias else True,
        layerscale_init=1e-5 if "blocks.0.ls1.gamma" in state else None,
        norm_layer="layernorm" if "norm.bias" in state else "rmsnorm",
        norm_eps=recipe["norm_eps"],
        n_storage_tokens=state["storage_tokens"].shape[1] if "storage_tokens" in state else 0,
        rope_rescale_coords=recipe["rope_rescale_coords"],
        rope_dtype="bf16" if bf16_rope else ("fp16" if periods.dtype == torch.float16 else "fp32"),
        untie_cls_and_patch_norms="cls_norm.weight" in state,
        untie_global_and_local_cls_norm="local_cls_norm.weight" in state,
        **ffn,
        **_rope_from_periods(periods),
    )


def _state_and_config(obj: Any, metadata: dict[str, str], source: str) -> tuple[dict[str, Tensor], BackboneConfig]:
    if CONFIG_METADATA_KEY in metadata:
        return extract_backbone_state(obj, source), BackboneConfig.from_dict(json.loads(metadata[CONFIG_METADATA_KEY]))
    if isinstance(obj, Mapping) and is_hf_state_dict(obj):
        if "hf_config" not in metadata:
            raise CheckpointError(f"{source}: Hugging Face weights need their config.json beside them")
        config = backbone_config_from_hf(json.loads(metadata["hf_config"]))
        state = from_hf_state_dict(obj, config)
        # What the tensors show, read as from any other layout (config.json states the FFN width
        # as a number and LayerScale's init, which the loaded weights replace).
        inferred = infer_config(state, source)
        shown = ("ffn_layer", "ffn_ratio", "ffn_hidden_dim", "layerscale_init")
        return state, config.replace(**{name: getattr(inferred, name) for name in shown})
    state = extract_backbone_state(obj, source)
    return state, infer_config(state, source)


def _check_keys(model: DinoVisionTransformer, state: Mapping[str, Tensor], source: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or mismatched:
        raise CheckpointError(
            f"{source}: the weights do not fit the inferred architecture.\n"
            f"  missing keys: {missing[:20]}{' ...' if len(missing) > 20 else ''}\n"
            f"  unexpected keys: {unexpected[:20]}{' ...' if len(unexpected) > 20 else ''}\n"
            f"  shape mismatches: {mismatched[:20]}\n"
            f"  inferred architecture: {model.config}"
        )


def load_backbone(
    checkpoint: str | Path | Mapping[str, Any],
    rope_dtype: str | None = None,
    **overrides: Any,
) -> DinoVisionTransformer:
    """A backbone with the checkpoint's weights, loaded strictly, in eval mode.

    `rope_dtype=None` computes RoPE in the dtype the checkpoint stores its periods in (bfloat16
    for MedDINOv3); pass "fp32" to force float32. Other keyword arguments override inferred
    config fields (e.g. `drop_path_rate=0.2` for fine-tuning).
    """
    if isinstance(checkpoint, Mapping):
        source, (obj, metadata) = "state dict", (checkpoint, embedded_metadata(checkpoint))
        check_finite(obj, source)
    else:
        source = str(checkpoint)
        obj, metadata = read_checkpoint(checkpoint)
    state, config = _state_and_config(obj, metadata, source)
    if rope_dtype is not None:
        overrides["rope_dtype"] = rope_dtype
    config = config.replace(**overrides)
    model = DinoVisionTransformer(config)
    _check_keys(model, state, source)
    model.load_state_dict(state, strict=True)
    return model.eval()
