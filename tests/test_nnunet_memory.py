"""The training-memory model behind `meddinov3 plan --gpu-memory`: the allocation tracker counted by
hand, the model's arithmetic, and its estimates against PyTorch's own memory tracker (MemTracker)
over real nnU-Net training steps at 224 and 448, single- and multi-scale."""

from __future__ import annotations

import pytest
import torch

from meddinov3.backbone import preset_config
from meddinov3.nnunet.memory import (
    GIB,
    Line,
    MemoryEstimate,
    StorageTracker,
    estimate_training_memory,
    samples_through_branches,
    saved_activation_bytes,
    tracked_training_peak,
)
from meddinov3.nnunet.network import unwrap
from meddinov3.nnunet.paths import NnUNetSetupError
from meddinov3.nnunet.plans import batch_size_that_fits
from meddinov3.nnunet.spec import NetworkSpec
from meddinov3.segmentation import default_interaction_layers
from meddinov3.nnunet.standalone import standalone_trainer, synthetic_batch, use_nnunet_folders

NUM_CLASSES = 16  # AMOS22: 15 organs + background
# Issue 12 asks for 15%. The model lands within 2% (narrow) and 0.4% (ViT-B/16); at 5% an estimate
# that leaves out the backward pass's transients fails the single-scale cases (0.93 of the tracked
# peak; 0.95 multi-scale), at 15% it would pass them all.
TOLERANCE = 0.05
NARROW = {"embed_dim": 96, "num_heads": 2, "depth": 4}  # ViT-B/16's layout, an eighth of its width, 4 blocks


def test_storage_tracker_counts_by_hand():
    with StorageTracker() as tracker:
        a = torch.empty(1000)  # 4000 bytes
        b = a.view(10, 100)  # a view: nothing new
        a.add_(1)  # in place: nothing new
        c = torch.empty(500, dtype=torch.bfloat16)  # 1000 bytes: 5000 live, the peak
        del a, b  # freed: 1000 live
        d = c * 2  # 1000 bytes
    assert (tracker.peak, tracker.live) == (5000, 2000)
    del c, d
    assert tracker.live == 0


def test_saved_activations_counted_by_hand():
    """Per sample, bf16: the input copy (10 x 2), the hidden layer (20 x 2) and the output (5 x 2);
    once: the bf16 copy of the second weight (20 x 5 x 2), kept to send the gradient back."""
    network = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(10, 20), torch.nn.Linear(20, 5))
    assert [saved_activation_bytes(network, torch.randn(n, 2, 5)) for n in (1, 3)] == [200 + 70, 200 + 3 * 70]


def test_lines_and_stochastic_depth_subsets():
    assert Line.through((10, 20), (5.0, 9.0))(30) == pytest.approx(13.0)
    # DINOv3 runs a residual branch on max(int(b * (1 - p)), 1) samples.
    assert [samples_through_branches(b, 0.2) for b in (1, 2, 5, 12)] == [1, 1, 4, 9]
    assert samples_through_branches(5, 0.0) == 5


def test_peak_is_the_backward_pass_or_the_optimizer_step():
    weights = 2**26  # 16 bytes each: 1 GiB with gradients and AdamW's moments; 0.75 GiB without gradients
    estimate = MemoryEstimate(weights, 0, fixed=GIB / 4, per_sample=GIB / 2, per_branch_sample=GIB / 2, drop_path_rate=0.2)
    assert estimate.total_bytes(5) == 0.75 * GIB + GIB / 4 + 5 * GIB / 2 + 4 * GIB / 2
    assert estimate.largest_batch(10) == 9  # 1 GiB + 9 x 0.5 + 7 x 0.5 = 9 GiB = 0.9 x 10 GiB
    assert estimate.largest_batch(1) == 0
    small = MemoryEstimate(weights, 0, fixed=0, per_sample=1000, per_branch_sample=0, drop_path_rate=0)
    assert small.total_bytes(1) == GIB  # the optimizer step, not the activations, is the peak


def test_batch_is_nnunets_unless_the_gpu_is_too_small(capsys):
    dataset_json = {"labels": {"background": 0, "organ": 1}, "channel_names": {"0": "CT"}}
    assert batch_size_that_fits(12, 64, dataset_json, gpu_memory_gib=1000) == 12
    assert "batch size 12 (nnU-Net's 2d: 12" in capsys.readouterr().out
    # ViT-B/16 weights with AdamW state alone take about 1.6 GiB: 1 GiB cannot train it.
    with pytest.raises(NnUNetSetupError, match="2d_64: one 64x64 slice needs about"):
        batch_size_that_fits(12, 64, dataset_json, gpu_memory_gib=1)


@pytest.fixture
def nnunet_folders(tmp_path, monkeypatch):
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(name, "")  # restored after the test
    return use_nnunet_folders(tmp_path)


def _estimate_against_tracked_peak(multiscale: bool, side: int, batch_size: int, **width) -> tuple[float, float]:
    """(estimate, PyTorch's tracked peak) of a bf16 training step of the trainer `meddinov3 train` runs."""
    config = preset_config("vitb16", drop_path_rate=0.2, **width)
    layers = default_interaction_layers(config.depth) if multiscale else [config.depth - 1]
    spec = NetworkSpec("dinov3" if multiscale else "scratch", config.to_dict(), multiscale, layers, precision="bf16")
    torch.manual_seed(0)
    trainer = standalone_trainer(spec, (side, side), NUM_CLASSES, batch_size, torch.device("cpu"))
    estimate = estimate_training_memory(unwrap(trainer.network), (side, side), NUM_CLASSES)
    return estimate.total_bytes(batch_size), tracked_training_peak(trainer, synthetic_batch(trainer))


@pytest.mark.parametrize("multiscale", [True, False], ids=["multi-scale", "single-scale"])
@pytest.mark.parametrize("side, batch_size", [(224, 6), (448, 2)])
def test_estimate_within_5_percent_of_the_tracked_peak(nnunet_folders, multiscale, side, batch_size):
    estimate, peak = _estimate_against_tracked_peak(multiscale, side, batch_size, **NARROW)
    assert abs(estimate / peak - 1) <= TOLERANCE, f"estimate {estimate / 2**20:.0f} MiB, tracked {peak / 2**20:.0f} MiB"


@pytest.mark.slow
@pytest.mark.parametrize("multiscale", [True, False], ids=["multi-scale", "single-scale"])
@pytest.mark.parametrize("side, batch_size", [(224, 8), (448, 2)])
def test_vitb16_estimate_within_5_percent_of_the_tracked_peak(nnunet_folders, multiscale, side, batch_size):
    estimate, peak = _estimate_against_tracked_peak(multiscale, side, batch_size)
    print(f"ViT-B/16 {'multi' if multiscale else 'single'}-scale {side}, batch {batch_size}: "
          f"estimate {estimate / 2**20:.0f} MiB, tracked peak {peak / 2**20:.0f} MiB ({estimate / peak:.3f})")
    assert abs(estimate / peak - 1) <= TOLERANCE


def test_gpu_memory_plans_for_the_backbone_the_method_trains():
    """`plan --gpu-memory --method M --backbone P` measures the network M builds on P, not ViT-B/16."""
    from meddinov3.nnunet.memory import backbone_name, backbone_preset, method_network_model
    from meddinov3.nnunet.spec import NetworkSpecError

    assert backbone_preset("meddinov3") == "meddinov3_vitb16" and backbone_preset("dinov3", "vits16") == "vits16"
    assert [backbone_name(p) for p in ("meddinov3_vitb16", "vitl16plus", "vit7b16")] == ["ViT-B/16", "ViT-L/16+", "ViT-7B/16"]
    with pytest.raises(NetworkSpecError, match="'dino-unet' trains a dino-unet"):
        backbone_preset("dino-unet")
    small = method_network_model("dinov3-single", "vits16", NUM_CLASSES, 1)
    assert 21e6 < small.trainable_weights < 23e6, "ViT-S/16 (21.6M) and a single-scale decoder, not ViT-B/16's 86M"
