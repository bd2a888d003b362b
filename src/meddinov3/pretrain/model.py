"""Student, EMA teacher and Gram teacher, and the DINOv3 objective that ties them together.

Student: backbone + DINO head + iBOT head, trained (the module DDP wraps). Teacher: an EMA of
the student, run in eval mode on the global crops only; its outputs become targets by
Sinkhorn-Knopp (or softmax centering). Gram teacher (stages 2 and 3): a frozen snapshot of the
teacher backbone that sees the global crops at a higher resolution; the student's patch-feature
Gram matrices are pulled towards its own, resized to the student's grid.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from meddinov3.pretrain.config import GramConfig, LossConfig
from meddinov3.pretrain.distributed import all_gather_with_grad
from meddinov3.pretrain.heads import DINOHead
from meddinov3.pretrain.schedules import ScheduleValues
from meddinov3.pretrain.losses import (
    batch_center,
    dino_loss,
    gram_loss,
    ibot_loss,
    koleo_loss,
    sinkhorn_knopp,
    softmax_center,
)


class SSLNetwork(nn.Module):
    """Backbone with its DINO (CLS) and iBOT (patch) heads; state-dict keys `backbone.*`, `dino_head.*`, `ibot_head.*`."""

    def __init__(self, backbone: nn.Module, dino_head: DINOHead, ibot_head: DINOHead):
        super().__init__()
        self.backbone = backbone
        self.dino_head = dino_head
        self.ibot_head = ibot_head

    def forward(
        self, global_crops: torch.Tensor, local_crops: torch.Tensor, masks: torch.Tensor, mask_indices: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Student pass: masked global crops and local crops."""
        global_out, local_out = self.backbone.forward_features([global_crops, local_crops], [masks, None])
        n_global = global_out["x_norm_clstoken"].shape[0]
        # One head call for all CLS tokens, as DINOv3 does.
        logits = self.dino_head(torch.cat([global_out["x_norm_clstoken"], local_out["x_norm_clstoken"]]))
        masked_patches = global_out["x_norm_patchtokens"].flatten(0, 1).index_select(0, mask_indices)
        return {
            "global_cls": global_out["x_norm_clstoken"],
            "global_patches": global_out["x_norm_patchtokens"],
            "global_logits": logits[:n_global],
            "local_logits": logits[n_global:],
            "masked_logits": self.ibot_head(masked_patches),
        }

    @torch.no_grad()
    def teacher_forward(self, global_crops: torch.Tensor, mask_indices: torch.Tensor) -> dict[str, torch.Tensor]:
        """Teacher pass: unmasked global crops; iBOT head only at the patches the student had masked."""
        out = self.backbone.forward_features(global_crops)
        masked_patches = out["x_norm_patchtokens"].flatten(0, 1).index_select(0, mask_indices)
        return {
            "cls_logits": self.dino_head(out["x_norm_clstoken"]),
            "masked_logits": self.ibot_head(masked_patches),
            "cls": out["x_norm_clstoken"],
            "patches": out["x_norm_patchtokens"],
        }


def build_heads(
    embed_dim: int, prototypes: int, hidden_dim: int, bottleneck_dim: int, n_layers: int, init: str = "dinov3",
    batchnorm: bool = False,
) -> tuple[DINOHead, DINOHead]:
    """DINOv3 keeps separate DINO and iBOT heads of the same shape."""
    make = lambda: DINOHead(embed_dim, prototypes, hidden_dim, bottleneck_dim, n_layers, init, batchnorm)  # noqa: E731
    return make(), make()


def resize_patch_grid(patches: torch.Tensor, grid: tuple[int, int], target: tuple[int, int], mode: str, antialias: bool) -> torch.Tensor:
    """(B, h*w, D) patch features on a `grid` -> (B, H*W, D) on `target` by image interpolation."""
    if grid == target:
        return patches
    b, _, d = patches.shape
    image = patches.transpose(1, 2).reshape(b, d, *grid)
    align = False if mode in ("bilinear", "bicubic") else None
    resized = F.interpolate(image.float(), size=target, mode=mode, align_corners=align, antialias=antialias)
    return resized.flatten(2).transpose(1, 2)


@dataclass
class LossTerms:
    total: torch.Tensor
    parts: dict[str, torch.Tensor]
    # The DINO targets of the teacher's global crops (crops x images, K): what the student matched.
    targets: torch.Tensor


class DINOv3Objective(nn.Module):
    """The loss of one iteration given student / teacher / Gram-teacher outputs.

    Holds the EMA centres used by softmax centering (Sinkhorn-Knopp needs no state).
    """

    def __init__(self, loss: LossConfig, gram: GramConfig, n_prototypes: int, koleo_group=None):
        super().__init__()
        self.loss = loss
        self.gram = gram
        self.koleo_group = koleo_group
        self.register_buffer("dino_center", torch.zeros(1, n_prototypes))
        self.register_buffer("ibot_center", torch.zeros(1, n_prototypes))

    @torch.no_grad()
    def teacher_targets(self, logits: torch.Tensor, temp: float, center_name: str) -> torch.Tensor:
        if self.loss.centering == "sinkhorn_knopp":
            return sinkhorn_knopp(logits, temp)
        center = getattr(self, center_name)
        probs = softmax_center(logits, center, temp)
        momentum = self.loss.center_momentum
        center.mul_(momentum).add_(batch_center(logits), alpha=1 - momentum)
        return probs

    def _koleo(self, global_cls: torch.Tensor, n_global: int) -> torch.Tensor:
        per_crop = global_cls.float().chunk(n_global)
        if self.loss.koleo_distributed and dist.is_initialized() and dist.get_world_size() > 1:
            per_crop = [all_gather_with_grad(crop, self.koleo_group) for crop in per_crop]
        return sum(koleo_loss(crop) for crop in per_crop) / n_global

    def forward(
        self,
        student: dict[str, torch.Tensor],
        teacher: dict[str, torch.Tensor],
        batch: dict[str, Any],
        sched: ScheduleValues,
        gram_patches: torch.Tensor | None = None,
    ) -> LossTerms:
        cfg = self.loss
        teacher_temp = sched.teacher_temp
        n_global = 2
        batch_size = student["global_cls"].shape[0] // n_global
        n_local = student["local_logits"].shape[0] // batch_size
        teacher_probs = self.teacher_targets(teacher["cls_logits"], teacher_temp, "dino_center")
        teacher_probs = teacher_probs.unflatten(0, (n_global, batch_size))
        global_logits = student["global_logits"].unflatten(0, (n_global, batch_size))

        parts: dict[str, torch.Tensor] = {}
        global_terms = n_global * (n_global - 1) if cfg.global_ignore_diagonal else n_global**2
        local_terms = n_global * n_local
        parts["dino_global"] = dino_loss(global_logits, teacher_probs, cfg.student_temp, cfg.global_ignore_diagonal)
        local_logits = student["local_logits"].unflatten(0, (n_local, batch_size))
        parts["dino_local"] = dino_loss(local_logits, teacher_probs, cfg.student_temp)
        dino = parts["dino_global"] * global_terms + sched.dino_local_weight * parts["dino_local"] * local_terms
        # Every (student crop, teacher crop) pair counts the same, up to the local-crop weight.
        total = cfg.dino_weight * dino / (global_terms + local_terms)

        masked_probs = self.teacher_targets(teacher["masked_logits"], teacher_temp, "ibot_center")
        parts["ibot"] = ibot_loss(
            student["masked_logits"], masked_probs, batch["masks"], batch["masks_weight"], cfg.student_temp
        )
        total = total + cfg.ibot_weight * parts["ibot"]

        if cfg.koleo_weight > 0:
            parts["koleo"] = self._koleo(student["global_cls"], n_global)
            # DINOv3 scales the per-crop mean by the number of global crops.
            total = total + cfg.koleo_weight * n_global * parts["koleo"]

        if gram_patches is not None:
            parts["gram"] = gram_loss(student["global_patches"], gram_patches, img_level=self.gram.img_level)
            total = total + sched.gram_weight * parts["gram"]
        return LossTerms(total=total, parts=parts, targets=teacher_probs)


class GramTeacher(nn.Module):
    """Frozen backbone snapshot giving patch features for the Gram loss."""

    def __init__(self, backbone: nn.Module, gram: GramConfig):
        super().__init__()
        self.backbone = copy.deepcopy(backbone).eval().requires_grad_(False)
        self.gram = gram

    @torch.no_grad()
    def refresh_from(self, backbone: nn.Module) -> None:
        self.backbone.load_state_dict(backbone.state_dict())

    @torch.no_grad()
    def patch_features(self, gram_crops: torch.Tensor, student_grid: tuple[int, int], patch_size: int) -> torch.Tensor:
        patches = self.backbone.forward_features(gram_crops)["x_norm_patchtokens"]
        grid = (gram_crops.shape[-2] // patch_size, gram_crops.shape[-1] // patch_size)
        return resize_patch_grid(patches, grid, student_grid, self.gram.resize_mode, self.gram.resize_antialias)

    def train(self, mode: bool = True) -> "GramTeacher":
        # Always in eval mode: no drop-path, no RoPE augmentation.
        return super().train(False)


@torch.no_grad()
def update_ema(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """teacher <- momentum * teacher + (1 - momentum) * student, parameter by parameter."""
    teacher_params = list(teacher.parameters())
    student_params = list(student.parameters())
    if len(teacher_params) != len(student_params):
        raise RuntimeError("teacher and student have different parameter lists")
    torch._foreach_mul_(teacher_params, momentum)
    torch._foreach_add_(teacher_params, student_params, alpha=1 - momentum)
