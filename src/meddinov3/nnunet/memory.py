"""GPU memory that training a ViT segmentation network takes, to plan a batch size that fits.

A training step peaks at one of two moments:
- early in the backward pass: the weights and AdamW's two moments (12 bytes per trainable weight;
  nnU-Net frees the gradients before every forward pass) plus the activations autograd saved and
  the first gradients flowing back through them;
- in the optimiser step: weights, gradients and moments (16 bytes per trainable weight); AdamW
  is fused on GPUs and goes one tensor at a time on CPUs, so its temporaries are small.

Activations are measured, not modelled: a dispatch-level tracker adds up every storage allocated
(and subtracts it when freed) over a forward pass under bf16 autocast (or the precision asked for), nnU-Net's Dice + CE loss
and a backward pass to the input image (no weight gradients: what it sees is activations and
their gradients), on the CPU, at two small patch sizes. Everything an activation holds is per
pixel or per token (flash attention keeps no token x token matrix), so each term is a straight
line in the pixel count, extrapolated to the planned size: seconds at 896 instead of a forward
pass at 896, which took 27 minutes and more than 21 GB of RAM. `plan --gpu-memory` plans for
bf16, the default on GPUs (fp16 stores the same bytes; fp32 about twice the activations).

Three terms, because DINOv3's stochastic depth runs each block's residual branches on only
max(int(b * (1 - p)), 1) of the b samples in a batch (see `Block._add_on_subset`): activations
that do not grow with the batch (autocast's bf16 copies of the weights, RoPE tables), those of
every sample (residual stream, decoder, loss), and those of every sample through the branches.
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

GIB = 2**30
# Share of the GPU that a plan may fill: the CUDA context, cuDNN workspaces and fragmentation.
USABLE_FRACTION = 0.9
# Patch sides the activations are measured at: small, so that ViT-B/16 runs them in seconds on a
# CPU. Lines through (32, 64) and through (64, 128) predict the same bytes at 224 to 0.1%.
MEASURED_SIDES = (32, 64)
MEASURED_BATCHES = (1, 2, 3, 4)
# nnU-Net's loss settings for a label map (nnUNetTrainer._build_loss without regions or ignore label).
_DICE_SETTINGS = {"batch_dice": True, "smooth": 1e-5, "do_bg": False, "ddp": False}


def samples_through_branches(batch_size: int, drop_path_rate: float) -> int:
    """How many samples of a batch DINOv3's batch-subset stochastic depth sends through a branch."""
    return max(int(batch_size * (1 - drop_path_rate)), 1) if drop_path_rate > 0 else batch_size


@dataclass(frozen=True)
class Line:
    """bytes = at_zero + per_pixel * pixels of the patch."""

    at_zero: float
    per_pixel: float

    def __call__(self, pixels: int) -> float:
        return self.at_zero + self.per_pixel * pixels

    @classmethod
    def through(cls, x: tuple[int, int], y: tuple[float, float]) -> "Line":
        slope = (y[1] - y[0]) / (x[1] - x[0])
        return cls(y[0] - slope * x[0], slope)


@dataclass(frozen=True)
class MemoryEstimate:
    """Training memory at one patch size, for any batch size."""

    trainable_weights: int
    frozen_weights: int
    fixed: float  # activation bytes that do not grow with the batch
    per_sample: float  # ... that grow with every sample
    per_branch_sample: float  # ... that grow with every sample through the residual branches
    drop_path_rate: float

    @property
    def weight_state_bytes(self) -> int:
        """fp32 weights, AdamW's two moments and the gradient of every trainable weight."""
        return 16 * self.trainable_weights + 4 * self.frozen_weights

    def activation_bytes(self, batch_size: int) -> float:
        branch_samples = samples_through_branches(batch_size, self.drop_path_rate)
        return self.fixed + batch_size * self.per_sample + branch_samples * self.per_branch_sample

    def total_bytes(self, batch_size: int) -> float:
        """Estimated peak memory of a training step at `batch_size`."""
        backward = self.weight_state_bytes - 4 * self.trainable_weights + self.activation_bytes(batch_size)
        return max(backward, self.weight_state_bytes)

    def largest_batch(self, gpu_memory_gib: float) -> int:
        """The largest batch whose estimate fits the usable share of the GPU (0 if none does)."""
        usable = gpu_memory_gib * GIB * USABLE_FRACTION
        batch = 0
        while self.total_bytes(batch + 1) <= usable:
            batch += 1
        return batch


def _dice_ce_loss() -> nn.Module:
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    return DC_and_CE_loss(_DICE_SETTINGS, {}, weight_ce=1, weight_dice=1, ignore_label=None,
                          dice_class=MemoryEfficientSoftDiceLoss)


class StorageTracker(TorchDispatchMode):
    """Bytes of the storages that operators allocate while this mode is active, live and at the peak.

    An operator output's storage counts once, when it first appears, unless it belongs to one of
    the operator's inputs (views, in-place results, and so tensors made before, like the weights),
    and is given back when PyTorch frees it."""

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self._counted: weakref.WeakSet = weakref.WeakSet()

    def _free(self, nbytes: int) -> None:
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {id(t.untyped_storage()) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for tensor in tree_leaves(out):
            if not isinstance(tensor, torch.Tensor):
                continue
            storage = tensor.untyped_storage()
            if id(storage) not in inputs and storage not in self._counted:
                self._counted.add(storage)
                self.live += storage.nbytes()
                weakref.finalize(storage, self._free, storage.nbytes())
        self.peak = max(self.peak, self.live)
        return out


def saved_activation_bytes(network: nn.Module, batch: torch.Tensor) -> int:
    """Bytes of the distinct storages autograd saves for backward in one bf16-autocast forward pass
    (the weights themselves excluded), and of the output."""
    parameter_storages = {p.untyped_storage().data_ptr() for p in network.parameters()}
    saved: dict[int, int] = {}

    def record(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameter_storages:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(record, lambda tensor: tensor):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            output = network(batch)
    return sum(saved.values()) + output.numel() * output.element_size()


def activation_peak_bytes(
    network: nn.Module, batch_size: int, side: int, num_classes: int, precision: str = "bf16"
) -> int:
    """Peak bytes allocated over a forward pass at `precision`, the Dice + CE loss and a backward
    pass to the input (activations and their gradients; no weight gradients), for a random batch
    of side x side slices."""
    from meddinov3.precision import autocast

    in_channels = network.dino_encoder.patch_embed.proj.in_channels
    # A CT slice is one channel (the network repeats it to the 3 the backbone was pretrained on).
    data = torch.randn(batch_size, 1 if in_channels == 3 else in_channels, side, side, requires_grad=True)
    target = torch.randint(0, num_classes, (batch_size, 1, side, side)).float()
    loss_fn = _dice_ce_loss()
    with StorageTracker() as tracker:
        with autocast(precision, data.device):
            loss = loss_fn(network(data), target)
        torch.autograd.grad(loss, data)
    return tracker.peak


@dataclass(frozen=True)
class MemoryModel:
    """A network's training memory at any patch size: its weights, and each activation term as a
    line in the patch's pixel count."""

    trainable_weights: int
    frozen_weights: int
    fixed: Line
    per_sample: Line
    per_branch_sample: Line
    drop_path_rate: float

    def at(self, patch_size: tuple[int, int]) -> MemoryEstimate:
        pixels = patch_size[0] * patch_size[1]
        return MemoryEstimate(self.trainable_weights, self.frozen_weights, self.fixed(pixels),
                              self.per_sample(pixels), self.per_branch_sample(pixels), self.drop_path_rate)


def measure_memory_model(network: nn.Module, num_classes: int, precision: str = "bf16") -> MemoryModel:
    """The memory model of training `network` (a MedDINOv3 segmenter, on the CPU) at `precision`.

    At each measured size, batches of 1 to 4 samples (1, 1, 2, 3 of them through the branches at
    the recipe's p = 0.2) separate the three activation terms by least squares."""
    network = network.train()
    rate = max(block.drop_path for block in network.dino_encoder.blocks)
    batches = MEASURED_BATCHES
    design = np.array([[1.0, b, samples_through_branches(b, rate)] for b in batches])
    terms = []
    for side in MEASURED_SIDES:
        peaks = [activation_peak_bytes(network, b, side, num_classes, precision) for b in batches]
        terms.append(np.linalg.lstsq(design, np.array(peaks, dtype=float), rcond=None)[0])
    pixels = tuple(side * side for side in MEASURED_SIDES)
    fixed, per_sample, per_branch = (Line.through(pixels, (float(a), float(b))) for a, b in zip(*terms))
    trainable = sum(p.numel() for p in network.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in network.parameters() if not p.requires_grad)
    return MemoryModel(trainable, frozen, fixed, per_sample, per_branch, rate)


def estimate_training_memory(
    network: nn.Module, patch_size: tuple[int, int], num_classes: int, precision: str = "bf16"
) -> MemoryEstimate:
    """Estimate for training `network` (on the CPU) on `patch_size` patches at `precision`."""
    return measure_memory_model(network, num_classes, precision).at(patch_size)


def backbone_preset(method: str, backbone: str | None = None) -> str:
    """The backbone preset `method` trains (`backbone` when given, as `train --backbone`); only
    the methods whose network is a ViT with a Primus decoder can be planned for."""
    from meddinov3.nnunet.methods import METHODS, get_method
    from meddinov3.nnunet.spec import NetworkSpecError

    chosen = get_method(method)
    if chosen.network != "primus":
        planned = ", ".join(m.name for m in METHODS.values() if m.network == "primus")
        raise NetworkSpecError(f"--gpu-memory plans for the ViT methods ({planned}); {method!r} trains a {chosen.network}")
    return backbone or chosen.backbone_preset


def backbone_name(preset: str) -> str:
    """The name papers use: 'ViT-B/16' for vitb16 and meddinov3_vitb16, 'ViT-L/16+' for vitl16plus."""
    match = re.fullmatch(r"(?:\w+_)?vit(\d*[a-z])(\d+)(plus)?", preset)
    return f"ViT-{match[1].upper()}/{match[2]}{'+' if match[3] else ''}" if match else preset


@lru_cache(maxsize=8)
def method_network_model(method: str, backbone: str, num_classes: int, in_channels: int) -> MemoryModel:
    """The memory model of `method`'s network as its trainer builds it on the `backbone` preset:
    the recipe's fine-tuning settings (stochastic depth), decoded from the method's blocks."""
    from meddinov3.backbone import preset_config
    from meddinov3.nnunet.methods import get_method
    from meddinov3.nnunet.network import build_network
    from meddinov3.nnunet.spec import NetworkSpec
    from meddinov3.segmentation import default_interaction_layers

    chosen = get_method(method)
    config = preset_config(backbone, **chosen.recipe.backbone)
    layers = default_interaction_layers(config.depth) if chosen.multiscale else [config.depth - 1]
    spec = NetworkSpec(method, config.to_dict(), chosen.multiscale, layers)
    return measure_memory_model(build_network(spec, in_channels, num_classes), num_classes)


def method_network_estimate(
    patch_size: int, num_classes: int, in_channels: int, method: str = "meddinov3", backbone: str | None = None
) -> MemoryEstimate:
    model = method_network_model(method, backbone_preset(method, backbone), num_classes, in_channels)
    return model.at((patch_size, patch_size))


def paper_network_estimate(patch_size: int, num_classes: int, in_channels: int) -> MemoryEstimate:
    """The paper's network: the multi-scale MedDINOv3 ViT-B/16 (the largest of its ViT methods)."""
    return method_network_estimate(patch_size, num_classes, in_channels)


def tracked_training_peak(trainer, batch: dict[str, torch.Tensor], steps: int = 2) -> int:
    """Peak bytes of a real training step on the CPU, by PyTorch's own memory tracker (weights,
    gradients, AdamW state, activations, temporaries). The first step creates AdamW's state, so
    the last of `steps` is the one measured. The tracker cannot hook frozen parameters: the mask
    token, frozen because no forward pass of a segmentation network uses it, is made trainable
    while tracking (the optimiser does not hold it, and it never gets a gradient)."""
    from torch.distributed._tools.mem_tracker import MemTracker

    from meddinov3.nnunet.network import unwrap

    mask_token = unwrap(trainer.network).dino_encoder.mask_token
    tracker = MemTracker()
    mask_token.requires_grad_(True)
    try:
        tracker.track_external(trainer.network, trainer.optimizer)
        with tracker:
            for step in range(steps):
                trainer.train_step(batch)
                if step < steps - 1:
                    tracker.reset_mod_stats()
    finally:
        mask_token.requires_grad_(False)
    return sum(device["Total"] for device in tracker.get_tracker_snapshot("peak").values())
