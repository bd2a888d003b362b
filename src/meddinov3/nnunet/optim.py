"""A method's optimiser from its recipe, and the per-group polynomial schedule every method uses.

nnU-Net's PolyLRScheduler writes one rate into every group; the MedDINOv3 recipe needs the
encoder and decoder groups to decay from different base rates.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim import Optimizer

from meddinov3.nnunet.methods import Recipe


def encoder_decoder_groups(network: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Trainable parameters of `network.dino_encoder`, and all other trainable ones."""
    encoder = [p for p in network.dino_encoder.parameters() if p.requires_grad]
    encoder_ids = {id(p) for p in encoder}
    decoder = [p for p in network.parameters() if p.requires_grad and id(p) not in encoder_ids]
    return encoder, decoder


def parameter_groups(network: nn.Module, lr: float, encoder_lr: float | None) -> list[dict]:
    """One group of every trainable parameter, or (with `encoder_lr`) decoder and encoder groups."""
    if encoder_lr is None:
        return [{"params": [p for p in network.parameters() if p.requires_grad], "lr": lr, "name": "all"}]
    encoder, decoder = encoder_decoder_groups(network)
    # Decoder first: nnU-Net logs the first group's rate.
    return [{"params": decoder, "lr": lr, "name": "decoder"}, {"params": encoder, "lr": encoder_lr, "name": "encoder"}]


def build_optimizer(
    network: nn.Module,
    recipe: Recipe,
    lr: float | None = None,
    encoder_lr: float | None = None,
    weight_decay: float | None = None,
    fused: bool = False,
) -> Optimizer:
    """The recipe's optimiser over the trainable parameters; rates and decay default to the recipe's.
    `fused`: AdamW's fused CUDA kernel (SGD keeps its default implementation)."""
    groups = parameter_groups(
        network, recipe.lr if lr is None else lr, recipe.encoder_lr if encoder_lr is None else encoder_lr
    )
    decay = recipe.weight_decay if weight_decay is None else weight_decay
    if recipe.optimizer == "AdamW":
        return torch.optim.AdamW(groups, betas=recipe.betas, weight_decay=decay, fused=fused)
    if recipe.optimizer == "SGD":
        return torch.optim.SGD(groups, momentum=recipe.momentum, nesterov=recipe.nesterov, weight_decay=decay)
    raise ValueError(f"unknown optimizer {recipe.optimizer!r} in the recipe")


class PolyLRPerGroup:
    """lr_g(epoch) = base_lr_g * (1 - epoch / max_epochs) ** exponent, for every group g.

    Stepped like nnU-Net's scheduler: `step(epoch)` with the epoch about to start, so the rate
    depends only on the epoch and a resumed run continues on the same curve.
    """

    def __init__(self, optimizer: Optimizer, max_epochs: int, exponent: float = 1.0):
        if max_epochs <= 0:
            raise ValueError(f"max_epochs must be positive, got {max_epochs}")
        self.optimizer = optimizer
        self.max_epochs = max_epochs
        self.exponent = exponent
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.step(0)

    def factor(self, epoch: int) -> float:
        return max(0.0, 1.0 - epoch / self.max_epochs) ** self.exponent

    def step(self, epoch: int | None = None) -> None:
        if epoch is None:
            raise ValueError("PolyLRPerGroup.step needs the epoch (nnU-Net passes trainer.current_epoch)")
        factor = self.factor(epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]
