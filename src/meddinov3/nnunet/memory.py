"""GPU memory that training a segmentation network takes, to plan a batch size that fits.

Activations are measured, not modelled: the real network runs one forward pass on the CPU under
bfloat16 autocast (nnU-Net trains with autocast on GPUs) while a saved-tensors hook adds up the
storage autograd keeps for the backward pass. Two passes, at batch 1 and 2, separate what grows
with the batch from what does not (autocast's bf16 copies of the weights). Weights, gradients
and AdamW's two moments add 16 bytes per trainable parameter (4 per frozen one). The backward
pass and the loss briefly hold more than the forward leaves behind: against PyTorch's own memory
tracker (torch.distributed._tools.mem_tracker) over whole AdamW training steps on the CPU, the
per-sample peak was 1.10x (single-scale) and 1.20x (multi-scale) the saved activations of ViT-B/16
at 448 x 448, hence TRANSIENT_FACTOR; the CUDA context and fragmentation take the rest of the GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

GIB = 2**30
TRANSIENT_FACTOR = 1.25
# Share of the GPU that a plan may fill: the CUDA context, cuDNN workspaces and fragmentation.
USABLE_FRACTION = 0.9


@dataclass(frozen=True)
class MemoryEstimate:
    fixed_bytes: int  # weights, gradients, optimiser state, saved tensors that do not grow with the batch
    per_sample_bytes: int  # saved activations per sample (before TRANSIENT_FACTOR)

    @property
    def peak_bytes_per_sample(self) -> float:
        return self.per_sample_bytes * TRANSIENT_FACTOR

    def total_bytes(self, batch_size: int) -> float:
        """Estimated peak memory of a training step at `batch_size`."""
        return self.fixed_bytes + batch_size * self.peak_bytes_per_sample

    def largest_batch(self, gpu_memory_gib: float) -> int:
        """The largest batch whose estimate fits the usable share of the GPU (0 if none does)."""
        usable = gpu_memory_gib * GIB * USABLE_FRACTION - self.fixed_bytes
        return max(int(usable // self.peak_bytes_per_sample), 0)


def parameter_state_bytes(network: nn.Module) -> int:
    """fp32 weights, plus gradient and AdamW's two moments for each trainable weight."""
    return sum(p.numel() * (16 if p.requires_grad else 4) for p in network.parameters())


def saved_activation_bytes(network: nn.Module, batch: torch.Tensor) -> int:
    """Bytes of the distinct storages autograd saves for backward in one bf16-autocast forward pass,
    not counting the parameters themselves (they are in `parameter_state_bytes`)."""
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


def estimate_training_memory(network: nn.Module, patch_size: tuple[int, int], in_channels: int) -> MemoryEstimate:
    network = network.train()
    one, two = (saved_activation_bytes(network, torch.randn(n, in_channels, *patch_size)) for n in (1, 2))
    per_sample = two - one
    return MemoryEstimate(fixed_bytes=parameter_state_bytes(network) + one - per_sample, per_sample_bytes=per_sample)


def paper_network_estimate(patch_size: int, num_classes: int, in_channels: int) -> MemoryEstimate:
    """Estimate for the paper's network, the multi-scale ViT-B/16 (the largest of the ViT methods)."""
    from meddinov3.backbone import build_backbone
    from meddinov3.segmentation import build_segmenter

    network = build_segmenter(build_backbone("vitb16"), num_classes, multiscale=True, in_channels=in_channels)
    network.dino_encoder.mask_token.requires_grad_(False)
    return estimate_training_memory(network, (patch_size, patch_size), in_channels)
