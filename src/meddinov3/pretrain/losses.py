"""The DINOv3 training objectives as plain functions.

Shapes follow the DINOv3 recipe:
- DINO: student logits (student crops, B, K) against teacher probabilities (teacher crops, B, K).
- iBOT: logits of the masked patches only, flattened over the batch, (M, K), with masks (B, N).
- KoLeo: one feature vector per image, (B, D).
- Gram: patch features (B, N, D) of the student and of the Gram teacher.

The teacher-side functions (Sinkhorn-Knopp, centering) reduce across ranks when
torch.distributed is initialised, so a run on many processes sees the same targets as one
process holding the whole global batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if _distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


@torch.no_grad()
def sinkhorn_knopp(teacher_logits: torch.Tensor, temperature: float, n_iterations: int = 3) -> torch.Tensor:
    """Teacher targets by Sinkhorn-Knopp: rows (samples) sum to 1, prototypes used equally.

    teacher_logits (B, K) -> probabilities (B, K). Across ranks the normalisers and the sample
    count are summed, so every process balances prototypes over the global batch.
    """
    scaled = teacher_logits.float() / temperature
    # Shifting by the global max changes nothing after normalisation but keeps exp() finite.
    shift = scaled.max() if scaled.numel() else scaled.new_full((), float("-inf"))
    if _distributed():
        dist.all_reduce(shift, op=dist.ReduceOp.MAX)
    q = torch.exp(scaled - shift).t()  # (K, B): prototypes x samples
    n_prototypes = q.shape[0]
    n_samples = _all_reduce_sum(torch.tensor(float(q.shape[1]), device=q.device))
    q /= _all_reduce_sum(q.sum())
    for _ in range(n_iterations):
        q /= _all_reduce_sum(q.sum(dim=1, keepdim=True))
        q /= n_prototypes
        q /= q.sum(dim=0, keepdim=True)
        q /= n_samples
    q *= n_samples
    return q.t()


@torch.no_grad()
def softmax_center(teacher_logits: torch.Tensor, center: torch.Tensor, temperature: float) -> torch.Tensor:
    """DINO's original teacher: softmax of the centred, sharpened logits (the alternative to Sinkhorn-Knopp)."""
    return F.softmax((teacher_logits.float() - center) / temperature, dim=-1)


@torch.no_grad()
def batch_center(teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean teacher logit over the global batch, (1, K): the statistic the centre is an EMA of."""
    total = _all_reduce_sum(teacher_logits.float().sum(dim=0, keepdim=True))
    count = _all_reduce_sum(torch.tensor(float(teacher_logits.shape[0]), device=teacher_logits.device))
    return total / count


def dino_loss(
    student_logits: torch.Tensor,
    teacher_probs: torch.Tensor,
    student_temp: float = 0.1,
    ignore_diagonal: bool = False,
) -> torch.Tensor:
    """Cross-entropy between every (student crop, teacher crop) pair, averaged over pairs and images.

    student_logits (S, B, K), teacher_probs (T, B, K). With ignore_diagonal, pair (i, i) is skipped:
    a global crop is not asked to predict the teacher's view of itself.
    """
    n_student, batch, _ = student_logits.shape
    n_teacher = teacher_probs.shape[0]
    log_probs = F.log_softmax(student_logits.float() / student_temp, dim=-1)
    if not ignore_diagonal:
        total = -torch.einsum("sbk,tbk->", log_probs, teacher_probs.float())
        return total / (batch * n_student * n_teacher)
    per_pair = -torch.einsum("sbk,tbk->st", log_probs, teacher_probs.float())
    n_diagonal = min(n_student, n_teacher)
    off_diagonal = per_pair.sum() - torch.diagonal(per_pair).sum()
    return off_diagonal / (batch * (n_student * n_teacher - n_diagonal))


def ibot_masks_weight(masks: torch.Tensor) -> torch.Tensor:
    """Weight of each masked patch: 1 / (masked patches of its image), so every image counts once."""
    per_image = 1.0 / masks.sum(dim=-1).clamp(min=1).float()
    return per_image.unsqueeze(-1).expand_as(masks)[masks]


def ibot_loss(
    student_patch_logits: torch.Tensor,
    teacher_patch_probs: torch.Tensor,
    masks: torch.Tensor,
    masks_weight: torch.Tensor | None = None,
    student_temp: float = 0.1,
) -> torch.Tensor:
    """Masked-patch cross-entropy, each image weighted equally, averaged over the images of `masks`.

    student_patch_logits / teacher_patch_probs (M, K) for the M masked patches (row-major order of
    masks (B, N)); masks_weight (M,) defaults to 1 / masked patches of the patch's image.
    """
    if masks_weight is None:
        masks_weight = ibot_masks_weight(masks)
    log_probs = F.log_softmax(student_patch_logits.float() / student_temp, dim=-1)
    per_patch = torch.sum(teacher_patch_probs.float() * log_probs, dim=-1)
    return -(per_patch * masks_weight).sum() / masks.shape[0]


def koleo_loss(features: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Kozachenko-Leonenko entropy estimate: -mean log distance to the nearest neighbour (L2-normalised)."""
    x = F.normalize(features.float(), p=2, dim=-1, eps=eps)
    with torch.no_grad():
        similarity = x @ x.t()
        similarity.fill_diagonal_(-1.0)  # a point is not its own neighbour
        neighbour = similarity.argmax(dim=1)
    distances = F.pairwise_distance(x, x[neighbour], p=2, eps=eps)
    return -torch.log(distances + eps).mean()


def gram_loss(student_feats: torch.Tensor, teacher_feats: torch.Tensor, img_level: bool = True) -> torch.Tensor:
    """Mean squared difference of the Gram matrices of L2-normalised patch features.

    student_feats / teacher_feats (B, N, D). img_level: one N x N Gram matrix per image; otherwise
    one (B*N) x (B*N) matrix over the whole batch.
    """
    student = F.normalize(student_feats.float(), dim=-1)
    teacher = F.normalize(teacher_feats.float(), dim=-1)
    if not img_level:
        student = student.flatten(0, 1)
        teacher = teacher.flatten(0, 1)
    student_gram = student @ student.transpose(-1, -2)
    teacher_gram = teacher @ teacher.transpose(-1, -2)
    return F.mse_loss(student_gram, teacher_gram)
