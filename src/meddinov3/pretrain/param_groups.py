"""AdamW parameter groups: layer-wise lr decay, patch-embed lr multiplier, no decay on norms/biases.

Rules of the DINOv3 recipe: in the backbone, block i gets lr x decay^(depth - i), the patch
embedding and the learned tokens count as layer 0 (decay^(depth + 1)) and the patch embedding is
further multiplied by `patch_embed_lr_mult`; everything after the blocks and the heads get the
full lr. Biases, norm weights and LayerScale gammas get no weight decay. The heads' prototype
layers (`last_layer`) are flagged so the trainer can freeze them at the start.
"""

from __future__ import annotations

from typing import Any

from torch import nn

_LAYER_ZERO = ("patch_embed", "cls_token", "storage_tokens", "mask_token", "pos_embed")


def backbone_layer_id(name: str, depth: int) -> int:
    """0 for embeddings and tokens, i + 1 for block i, depth + 1 for what follows the blocks."""
    if name.startswith(_LAYER_ZERO):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return depth + 1


def _no_weight_decay(name: str) -> bool:
    return name.endswith("bias") or "norm" in name or "gamma" in name


def parameter_groups(
    modules: dict[str, nn.Module], depth: int, layerwise_decay: float, patch_embed_lr_mult: float
) -> list[dict[str, Any]]:
    """Groups with `lr_multiplier`, `wd_multiplier` and `is_last_layer`, one per distinct setting.

    `modules` maps "backbone" / "dino_head" / "ibot_head" to the student's modules.
    """
    groups: dict[tuple[float, float, bool], dict[str, Any]] = {}
    for module_name, module in modules.items():
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            lr_mult = 1.0
            if module_name == "backbone":
                lr_mult = layerwise_decay ** (depth + 1 - backbone_layer_id(name, depth))
                if "patch_embed" in name:
                    lr_mult *= patch_embed_lr_mult
            wd_mult = 0.0 if _no_weight_decay(name) else 1.0
            is_last_layer = "last_layer" in name
            key = (lr_mult, wd_mult, is_last_layer)
            group = groups.setdefault(
                key, {"params": [], "lr_multiplier": lr_mult, "wd_multiplier": wd_mult, "is_last_layer": is_last_layer}
            )
            group["params"].append(param)
    return list(groups.values())


def apply_schedules(optimizer, lr: float, last_layer_lr: float, weight_decay: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = (last_layer_lr if group["is_last_layer"] else lr) * group["lr_multiplier"]
        group["weight_decay"] = weight_decay * group["wd_multiplier"]
