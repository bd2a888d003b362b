"""The training-memory estimate behind `meddinov3 plan --gpu-memory`: exact byte counts on a network
small enough to count by hand, linearity in the batch on the real segmenter, and batch selection."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from meddinov3.backbone import build_backbone
from meddinov3.nnunet.memory import (
    GIB,
    MemoryEstimate,
    estimate_training_memory,
    parameter_state_bytes,
    saved_activation_bytes,
)
from meddinov3.nnunet.paths import NnUNetSetupError
from meddinov3.nnunet.plans import batch_size_that_fits
from meddinov3.segmentation import build_segmenter


class TwoLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.first, self.second = nn.Linear(10, 20), nn.Linear(20, 5)

    def forward(self, x):
        return self.second(self.first(x.flatten(1)))


def test_bytes_counted_by_hand():
    """Per sample, bf16: the input copy (10 x 2), the hidden layer (20 x 2) and the output (5 x 2).
    Fixed: 16 bytes per trainable weight (325 of them) and the bf16 copy of the second weight
    (20 x 5 x 2), which autograd keeps to send the gradient back to the hidden layer."""
    network = TwoLinear()
    assert estimate_training_memory(network, (2, 5), 1) == MemoryEstimate(325 * 16 + 200, 20 + 40 + 10)
    # A frozen first layer: 4 bytes per weight, and nothing before the hidden layer is kept.
    network.first.requires_grad_(False)
    assert estimate_training_memory(network, (2, 5), 1) == MemoryEstimate(220 * 4 + 105 * 16, 40 + 10)


def test_segmenter_estimate_is_linear_in_the_batch():
    torch.manual_seed(0)
    backbone = build_backbone("vitb16", embed_dim=48, num_heads=2, depth=4)
    network = build_segmenter(backbone, 3, interaction_layers=(0, 1, 2, 3), in_channels=1)
    estimate = estimate_training_memory(network, (64, 64), 1)
    measured = parameter_state_bytes(network) + saved_activation_bytes(network, torch.randn(3, 1, 64, 64))
    assert estimate.fixed_bytes + 3 * estimate.per_sample_bytes == measured
    assert estimate.per_sample_bytes > 0 and estimate.fixed_bytes > parameter_state_bytes(network)


@pytest.mark.parametrize("multiscale", [True, False])
def test_estimate_covers_the_tracked_peak_of_real_training_steps(multiscale):
    """PyTorch's memory tracker follows every allocation of two AdamW steps (forward, loss, backward,
    optimiser); the estimate must not fall below its peak, nor waste more than a quarter."""
    from torch.distributed._tools.mem_tracker import MemTracker

    torch.manual_seed(0)
    backbone = build_backbone("vitb16", embed_dim=96, num_heads=2, depth=4)
    layers = (0, 1, 2, 3) if multiscale else (3,)
    network = build_segmenter(backbone, 4, multiscale=multiscale, interaction_layers=layers, in_channels=1)
    estimate = estimate_training_memory(network, (128, 128), 1)
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4)
    images, labels = torch.randn(4, 1, 128, 128), torch.randint(0, 4, (4, 128, 128))
    tracker = MemTracker()
    tracker.track_external(network, optimizer)
    with tracker:
        for step in range(2):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = nn.functional.cross_entropy(network(images), labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            if step == 0:  # the first step has no optimiser state yet
                tracker.reset_mod_stats()
    peak = sum(device["Total"] for device in tracker.get_tracker_snapshot("peak").values())
    assert peak <= estimate.total_bytes(4) <= 1.25 * peak


def test_largest_batch_uses_the_usable_share_of_the_gpu():
    estimate = MemoryEstimate(fixed_bytes=2 * GIB, per_sample_bytes=GIB)
    assert estimate.total_bytes(2) == 4.5 * GIB  # 1.25 x the saved activations per sample
    assert estimate.largest_batch(10) == 5  # (0.9 x 10 GiB - 2 GiB fixed) / 1.25 GiB
    assert estimate.largest_batch(2.5) == 0


def test_batch_is_nnunets_unless_the_gpu_is_too_small(capsys):
    dataset_json = {"labels": {"background": 0, "organ": 1}, "channel_names": {"0": "CT"}}
    assert batch_size_that_fits(12, 64, dataset_json, gpu_memory_gib=1000) == 12
    assert "batch size 12 (nnU-Net's 2d: 12" in capsys.readouterr().out
    # ViT-B/16 weights with AdamW state alone take about 1.4 GiB: 1 GiB cannot train it.
    with pytest.raises(NnUNetSetupError, match="2d_64: one 64x64 slice needs about"):
        batch_size_that_fits(12, 64, dataset_json, gpu_memory_gib=1)
