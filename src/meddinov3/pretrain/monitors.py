"""Learning monitors: is the self-distillation learning, or have its heads gone uniform?

A falling total loss says little: KoLeo alone can fall from 10 to 0 while the DINO and iBOT
heads sit at the uniform prediction, where the cross-entropy equals ln K. These measurements
say what the objective is doing:
- `dino_global_frac`, `dino_local_frac`, `ibot_frac`: each loss over its uniform-prediction value
  (ln K; for iBOT ln K times the share of images that carry masks). 1.0 means "predicts nothing".
- `teacher_entropy`: mean entropy of the teacher's CLS prediction (softmax at the teacher
  temperature), per sample; `teacher_mean_entropy`: entropy of the batch-mean prediction. A
  teacher that tells images apart has the first well below the second; equal values mean every
  image gets the same prediction (uniform or collapsed onto one prototype).
- `target_entropy`: mean entropy of the DINO targets the student is trained on (after
  Sinkhorn-Knopp or centering); ln K = uniform targets, which no student can learn from.
- `prototypes_used`: distinct arg-max prototypes of the teacher over the batch.
- `cls_std`, `patch_std`: spread of the teacher's normed CLS tokens across images and of its
  patch tokens across patches (per feature dimension, averaged); near 0 = input-independent.
- `patch_rank`: effective rank (exp of the entropy of the normalised singular values) of the
  teacher's centred patch features: how many directions the dense features actually use.
"""

from __future__ import annotations

import math

import torch

# Above this fraction of ln K after the warm-up, the DINO head is taken to predict uniformly.
UNIFORM_FRACTION = 0.98
# Patch rows used for the effective rank (an SVD per log step must stay cheap at ViT-B width).
RANK_ROWS = 2048


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in nats along the last axis."""
    return -(probs * torch.log(probs.clamp(min=1e-30))).sum(-1)


def effective_rank(features: torch.Tensor) -> float:
    """exp(entropy of the singular-value distribution) of the centred (N, D) matrix."""
    centred = features.float() - features.float().mean(0, keepdim=True)
    singular = torch.linalg.svdvals(centred)
    total = singular.sum()
    if total <= 0:
        return 0.0
    return float(torch.exp(entropy(singular / total)))


def _feature_std(features: torch.Tensor) -> float:
    """Standard deviation across rows, per column, averaged over columns."""
    return float(features.float().std(0).mean()) if features.shape[0] > 1 else 0.0


@torch.no_grad()
def learning_monitors(
    parts: dict[str, torch.Tensor],
    teacher: dict[str, torch.Tensor],
    targets: torch.Tensor,
    masks: torch.Tensor,
    n_prototypes: int,
    teacher_temp: float,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """The monitors of one iteration from its loss parts, teacher outputs, DINO targets and patch masks."""
    uniform = math.log(n_prototypes)
    masked_share = float(masks.any(-1).float().mean())
    out = {
        "dino_global_frac": float(parts["dino_global"]) / uniform,
        "dino_local_frac": float(parts["dino_local"]) / uniform,
        "ibot_frac": float(parts["ibot"]) / (uniform * masked_share) if masked_share > 0 else float("nan"),
    }
    probs = torch.softmax(teacher["cls_logits"].float() / teacher_temp, dim=-1)
    out["teacher_entropy"] = float(entropy(probs).mean())
    out["teacher_mean_entropy"] = float(entropy(probs.mean(0)))
    out["target_entropy"] = float(entropy(targets.float()).mean())
    out["prototypes_used"] = float(probs.argmax(-1).unique().numel())
    out["cls_std"] = _feature_std(teacher["cls"])
    patches = teacher["patches"].flatten(0, 1)
    out["patch_std"] = _feature_std(patches)
    if patches.shape[0] > RANK_ROWS:
        rows = torch.randperm(patches.shape[0], generator=generator, device="cpu")[:RANK_ROWS]
        patches = patches[rows.to(patches.device)]
    out["patch_rank"] = effective_rank(patches)
    return out


class UniformWatch:
    """Warns once when the heads are still in the uniform regime after the warm-up: the DINO loss
    at ln K and the teacher's per-sample output as flat as a uniform one. The loss alone can sit at
    or above ln K while the teacher is confident and the student has not caught up yet (measured
    with batch-normalised heads: 1.16 ln K at iteration 30 with a teacher entropy of 0.28 ln K),
    which is learning, not the failure this warns about."""

    def __init__(self, warmup_iterations: int, prototypes: int):
        self.warmup_iterations = warmup_iterations
        self.uniform_entropy = math.log(prototypes)
        self.warned = False

    def check(self, iteration: int, metrics: dict[str, float]) -> str | None:
        fraction = metrics.get("dino_global_frac")
        entropy = metrics.get("teacher_entropy")
        if self.warned or fraction is None or entropy is None or iteration < self.warmup_iterations:
            return None
        if fraction < UNIFORM_FRACTION or entropy < UNIFORM_FRACTION * self.uniform_entropy:
            return None
        self.warned = True
        return (
            f"not learning: the heads predict uniformly (DINO loss {fraction:.3f} x ln K at iteration "
            f"{iteration}, after the {self.warmup_iterations}-iteration warm-up; teacher entropy "
            f"{entropy:.3f} per sample vs "
            f"{metrics.get('teacher_mean_entropy', float('nan')):.3f} for the batch mean)"
        )
