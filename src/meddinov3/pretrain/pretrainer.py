"""Student, teacher and Gram teacher with their optimizer, and one training iteration.

`Pretrainer.step(batch)` is the whole DINOv3 iteration: teacher targets on the global crops,
student forward (DDP-wrapped under torchrun), loss, backward, per-network gradient clipping,
AdamW with the scheduled lr / weight decay, EMA update of the teacher, optional Gram-teacher
refresh. `state_dict()` / `load_state_dict()` capture everything needed to resume exactly.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from meddinov3.backbone import build_backbone, load_backbone
from meddinov3.precision import autocast, resolve_precision
from meddinov3.pretrain.checkpoint import head_states
from meddinov3.pretrain.config import RANDOM_INIT, PretrainConfig
from meddinov3.pretrain.distributed import DistInfo, all_reduce_mean, gather_objects
from meddinov3.pretrain.monitors import learning_monitors
from meddinov3.pretrain.model import DINOv3Objective, GramTeacher, SSLNetwork, build_heads, update_ema
from meddinov3.pretrain.param_groups import apply_schedules, parameter_groups
from meddinov3.pretrain.schedules import schedule_values

log = logging.getLogger("meddinov3.pretrain")


@torch.no_grad()
def zero_masked_key_bias(backbone: torch.nn.Module) -> None:
    """DINOv3 multiplies its key bias by a stored 0: the official .pth keeps values there that no
    forward pass uses and no gradient or weight decay changes, the Hugging Face layout keeps none.
    Zeroed, a start from either holds the same tensors, so its runs and exports are the same."""
    for module in backbone.modules():
        mask = getattr(module, "bias_mask", None)
        if mask is not None and module.bias is not None:
            module.bias.mul_(mask.to(module.bias.dtype))


def build_student(config: PretrainConfig) -> SSLNetwork:
    """Backbone from `model.init` (any supported layout, or "random": the `model.arch` preset), plus the two heads."""
    m = config.model
    overrides = {"drop_path_rate": m.drop_path_rate, **m.arch_overrides}
    from_weights = m.init != RANDOM_INIT
    if not from_weights and not m.head_batchnorm:
        # The from-scratch recipe's heads have BatchNorm; the stage recipes' do not, and stay uniform.
        log.warning(
            "model.init=random: starting from random weights with the stage recipe's heads, which do not learn "
            "from random weights at small scale (the DINO loss stays at ln K). The paper starts from DINOv3 "
            "ViT-B/16 (model.init=dinov3-vitb16); the from-scratch recipe is --config tiny (README, "
            "'Pretraining from scratch')."
        )
    backbone = load_backbone(m.init, **overrides) if from_weights else build_backbone(m.arch, **overrides)
    zero_masked_key_bias(backbone)
    dino_head, ibot_head = build_heads(
        backbone.embed_dim, m.head_prototypes, m.head_hidden_dim, m.head_bottleneck_dim, m.head_layers, m.head_init,
        m.head_batchnorm,
    )
    network = SSLNetwork(backbone, dino_head, ibot_head)
    if from_weights:
        for name, state in head_states(m.init).items():
            head = getattr(network, name)
            try:
                head.load_state_dict(state)
            except RuntimeError as err:
                raise ValueError(
                    f"{m.init}: its {name} does not match model.head_* of the config "
                    f"(prototypes / hidden / bottleneck / layers): {err}"
                ) from None
    return network.train()


def build_optimizer(student: SSLNetwork, config: PretrainConfig) -> torch.optim.AdamW:
    modules = {"backbone": student.backbone, "dino_head": student.dino_head, "ibot_head": student.ibot_head}
    groups = parameter_groups(modules, student.backbone.n_blocks, config.optim.layerwise_decay, config.optim.patch_embed_lr_mult)
    return torch.optim.AdamW(groups, lr=config.optim.lr, betas=config.optim.betas)


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


@dataclass
class Pretrainer:
    """Models, optimizer and the step function; `train()` adds data, logging and checkpoints."""

    config: PretrainConfig
    device: torch.device
    dist_info: DistInfo = field(default_factory=DistInfo)

    def __post_init__(self) -> None:
        cfg = self.config
        torch.manual_seed(cfg.run.seed)  # identical initial heads on every rank
        self.student = build_student(cfg).to(self.device)
        self.teacher = copy.deepcopy(self.student).eval().requires_grad_(False)
        self.gram_teacher = self._build_gram_teacher() if cfg.gram.enabled else None
        koleo_group = dist.new_group() if cfg.loss.koleo_distributed and self.dist_info.enabled else None
        self.objective = DINOv3Objective(cfg.loss, cfg.gram, cfg.model.head_prototypes, koleo_group).to(self.device)
        self.optimizer = build_optimizer(self.student, cfg)
        self.student_ddp = DistributedDataParallel(self.student) if self.dist_info.enabled else self.student
        self.iteration = 0
        self.precision = resolve_precision(cfg.run.precision, self.device)
        # Only fp16 needs loss scaling; a disabled scaler passes everything through unchanged.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        torch.manual_seed(cfg.run.seed + self.dist_info.rank)  # per-rank stochastic depth / RoPE jitter

    @property
    def patch_size(self) -> int:
        return self.student.backbone.patch_size

    def _build_gram_teacher(self) -> GramTeacher:
        path = self.config.gram.teacher
        if path:
            log.info("Gram teacher: %s", path)
            source = load_backbone(path).to(self.device)
        else:
            log.info("Gram teacher: the EMA teacher of model.init (%s)", self.config.model.init)
            source = self.teacher.backbone
        gram = GramTeacher(self.teacher.backbone, self.config.gram)
        gram.refresh_from(source)
        return gram

    def step(self, batch: dict[str, Any], monitor: bool = False) -> dict[str, float]:
        """One training iteration at `self.iteration`; returns metrics averaged over ranks, with
        the learning monitors (see `monitors.py`) when `monitor` is set."""
        cfg = self.config
        sched = schedule_values(cfg, self.iteration)
        apply_schedules(self.optimizer, sched.lr, sched.last_layer_lr, sched.weight_decay)
        batch = to_device(batch, self.device)
        global_crops, masks, mask_indices = batch["global_crops"], batch["masks"], batch["mask_indices"]
        local_crops = batch["local_crops"]

        with autocast(self.precision, self.device):
            teacher_out = self.teacher.teacher_forward(global_crops, mask_indices)
            gram_patches = None
            if self.gram_teacher is not None:
                grid = (global_crops.shape[-2] // self.patch_size, global_crops.shape[-1] // self.patch_size)
                gram_patches = self.gram_teacher.patch_features(batch["gram_crops"], grid, self.patch_size)
            student_out = self.student_ddp(global_crops, local_crops, masks, mask_indices)
        terms = self.objective(student_out, teacher_out, batch, sched, gram_patches)

        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(terms.total).backward()
        self.scaler.unscale_(self.optimizer)
        grad_norms = {}
        if cfg.optim.clip_grad > 0:
            # Clipped per sub-network, as DINOv3 does: a spike in one head does not shrink the others.
            for name in ("backbone", "dino_head", "ibot_head"):
                params = getattr(self.student, name).parameters()
                grad_norms[f"grad_norm_{name}"] = float(torch.nn.utils.clip_grad_norm_(params, cfg.optim.clip_grad))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        update_ema(self.teacher, self.student, sched.momentum)
        self.iteration += 1
        every = cfg.gram.update_every
        if self.gram_teacher is not None and every > 0 and self.iteration % every == 0:
            self.gram_teacher.refresh_from(self.teacher.backbone)

        metrics = {"loss": float(all_reduce_mean(terms.total.detach()))}
        metrics.update({k: float(all_reduce_mean(v.detach())) for k, v in terms.parts.items()})
        if monitor:
            # Its own generator: the monitors must not consume the RNG that training draws from.
            generator = torch.Generator().manual_seed(self.iteration)
            monitors = learning_monitors(
                terms.parts, teacher_out, terms.targets, masks, cfg.model.head_prototypes, sched.teacher_temp, generator
            )
            metrics.update({k: float(all_reduce_mean(torch.tensor(v, device=self.device))) for k, v in monitors.items()})
        metrics.update(grad_norms)
        metrics.update(lr=sched.lr, wd=sched.weight_decay, momentum=sched.momentum, teacher_temp=sched.teacher_temp)
        if cfg.loss.dino_local_weight_ramp or cfg.loss.dino_local_weight != 1.0:
            metrics["dino_local_weight"] = sched.dino_local_weight
        if self.gram_teacher is not None:
            metrics["gram_weight"] = sched.gram_weight
        metrics.update(global_crop_size=global_crops.shape[-1], local_crop_size=local_crops.shape[-1])
        return metrics

    def state_dict(self) -> dict[str, Any]:
        rng = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "iteration": self.iteration,
            "student": self.student.state_dict(),
            "teacher": self.teacher.state_dict(),
            "gram_teacher": self.gram_teacher.backbone.state_dict() if self.gram_teacher is not None else None,
            "objective": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "grad_scaler": self.scaler.state_dict(),
            "rng": gather_objects(rng),
            "world_size": self.dist_info.world_size,
            "config": self.config.to_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.student.load_state_dict(state["student"])
        self.teacher.load_state_dict(state["teacher"])
        if self.gram_teacher is not None and state.get("gram_teacher") is not None:
            self.gram_teacher.backbone.load_state_dict(state["gram_teacher"])
        self.objective.load_state_dict(state["objective"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("grad_scaler"):  # empty when saved without fp16
            self.scaler.load_state_dict(state["grad_scaler"])
        self.iteration = int(state["iteration"])
        if state.get("world_size") == self.dist_info.world_size:
            rng = state["rng"][self.dist_info.rank]
            torch.set_rng_state(rng["cpu"])
            if "cuda" in rng and self.device.type == "cuda":
                torch.cuda.set_rng_state(rng["cuda"], self.device)
        else:
            log.warning(
                "resuming on %d processes from a checkpoint written by %s: stochastic depth / RoPE jitter "
                "draws will differ from an uninterrupted run",
                self.dist_info.world_size,
                state.get("world_size"),
            )
