"""The paper's baselines: network sizes at full scale, the pure-PyTorch deformable attention, and
each baseline trained, validated and used for prediction inside nnU-Net on CPU."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from baseline_workspace import baseline_workspace, train_quickly

from meddinov3.backbone import build_backbone
from meddinov3.baselines import build_dino_unet, build_segformer
from meddinov3.baselines.adapter import SpatialPriorModule
from meddinov3.baselines.deformable import DeformableCrossAttention, reference_points

BASELINES = ["nnunet", "segformer", "dino-unet"]


def n_params(module: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def mit_segformer_parameters(in_channels: int, num_classes: int) -> int:
    """SegFormer-B2 counted by hand from the paper's architecture (MiT-B2 + all-MLP head).

    Per stage: overlapping patch embedding (k x k conv + LayerNorm); per block: LayerNorm, q/k/v/out
    projections, spatial-reduction conv + LayerNorm when the ratio > 1, LayerNorm, Mix-FFN
    (linear, 3x3 depthwise conv, linear; ratio 4); a LayerNorm per stage. Head: one linear per
    stage to 768, 1x1 fuse conv (no bias) + BatchNorm, 1x1 classifier.
    """
    widths, depths, reductions, kernels, head = (64, 128, 320, 512), (3, 4, 6, 3), (8, 4, 2, 1), (7, 3, 3, 3), 768
    total, previous = 0, in_channels
    for c, depth, r, k in zip(widths, depths, reductions, kernels):
        total += k * k * previous * c + c + 2 * c
        block = 2 * c + 4 * (c * c + c) + 2 * c
        if r > 1:
            block += r * r * c * c + c + 2 * c
        hidden = 4 * c
        block += c * hidden + hidden + 9 * hidden + hidden + hidden * c + c
        total += depth * block + 2 * c
        previous = c
    return total + sum(c * head + head for c in widths) + 4 * head * head + 2 * head + head * num_classes + num_classes


def test_segformer_b2_has_the_published_size():
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    reference = SegformerConfig(
        num_labels=150, hidden_sizes=[64, 128, 320, 512], depths=[3, 4, 6, 3], decoder_hidden_size=768
    )
    ade20k = n_params(SegformerForSemanticSegmentation(reference))
    assert ade20k == mit_segformer_parameters(3, 150)
    assert abs(ade20k / 1e6 - 27.5) < 0.05  # SegFormer paper, Table 1: MiT-B2 24.2M + head 3.3M
    ours = build_segformer(num_classes=150, in_channels=3)
    assert n_params(ours) == ade20k
    assert n_params(build_segformer(num_classes=4, in_channels=1)) == mit_segformer_parameters(1, 4)


def test_segformer_logits_are_upsampled_to_the_input():
    torch.manual_seed(0)
    network = build_segformer(num_classes=3, in_channels=1, variant="b0").eval()
    x = torch.randn(2, 1, 64, 96)
    with torch.no_grad():
        quarter = network.model(pixel_values=x).logits
        full = network(x)
    assert quarter.shape == (2, 3, 16, 24) and full.shape == (2, 3, 64, 96)
    expected = torch.nn.functional.interpolate(quarter, size=(64, 96), mode="bilinear", align_corners=False)
    torch.testing.assert_close(full, expected)


def bilinear(value: np.ndarray, x: float, y: float) -> np.ndarray:
    """value (H, W, C) at normalised (x, y), pixel centres at (i + 0.5) / size, zero outside."""
    h, w, _ = value.shape
    px, py = x * w - 0.5, y * h - 0.5
    x0, y0 = int(np.floor(px)), int(np.floor(py))
    out = np.zeros(value.shape[-1])
    for yy, wy in ((y0, y0 + 1 - py), (y0 + 1, py - y0)):
        for xx, wx in ((x0, x0 + 1 - px), (x0 + 1, px - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                out += wy * wx * value[yy, xx]
    return out


def test_deformable_attention_matches_explicit_bilinear_sampling():
    torch.manual_seed(0)
    dim, heads, points = 8, 2, 3
    attention = DeformableCrossAttention(dim, heads, points, value_ratio=1.0).double()
    for parameter in attention.parameters():
        torch.nn.init.normal_(parameter, std=0.5)
    h, w = 5, 7
    value_map = torch.randn(1, dim, h, w, dtype=torch.float64)
    query = torch.randn(1, 6, dim, dtype=torch.float64)
    refs = torch.rand(1, 6, 2, dtype=torch.float64)
    out = attention(query, refs, value_map)

    with torch.no_grad():
        value = attention.value_proj(value_map.flatten(2).transpose(1, 2)).reshape(h, w, dim).numpy()
        offsets = attention.sampling_offsets(query).reshape(6, heads, points, 2).numpy()
        weights = attention.attention_weights(query).reshape(6, heads, points).softmax(-1).numpy()
        head_dim = dim // heads
        gathered = np.zeros((6, dim))
        for q in range(6):
            for hd in range(heads):
                part = value[..., hd * head_dim : (hd + 1) * head_dim]
                for p in range(points):
                    x = refs[0, q, 0].item() + offsets[q, hd, p, 0] / w
                    y = refs[0, q, 1].item() + offsets[q, hd, p, 1] / h
                    gathered[q, hd * head_dim : (hd + 1) * head_dim] += weights[q, hd, p] * bilinear(part, x, y)
        expected = attention.output_proj(torch.from_numpy(gathered))[None]
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


def test_reference_points_are_pixel_centres():
    points = reference_points([(2, 4), (1, 1)], torch.device("cpu"))
    assert points.shape == (1, 9, 2)
    torch.testing.assert_close(points[0, 1], torch.tensor([0.375, 0.25]))
    torch.testing.assert_close(points[0, -1], torch.tensor([0.5, 0.5]))


def test_dino_unet_vitb_sizes_and_frozen_encoder():
    vit = build_backbone("vitb16")
    vit_params = n_params(vit)
    network = build_dino_unet(vit, num_classes=16, in_channels=1)
    assert n_params(network.dino_encoder) == vit_params and n_params(network.dino_encoder, True) == 0
    assert n_params(network) - n_params(network, True) == vit_params

    # Adapter parts at ViT-B width (768, 12 heads), counted by hand.
    spm = 9 * 64 + 128 + 2 * (9 * 64 * 64 + 128) + (9 * 64 * 128 + 256) + (9 * 128 * 256 + 512) + (9 * 256 * 256 + 512)
    spm += sum((c + 1) * 768 for c in (64, 128, 256, 256))
    assert n_params(SpatialPriorModule(1, 768)) == spm
    deformable = (768 * 384 + 384) + (768 * 96 + 96) + (768 * 48 + 48) + (384 * 768 + 768)
    assert n_params(DeformableCrossAttention(768, 12)) == deformable
    # Trainable: adapter (~10M) + projections + stems + nnU-Net-width decoder, far below the frozen ViT.
    assert 15e6 < n_params(network, True) < 30e6

    network.train()
    assert not network.dino_encoder.training and network.adapter.training
    with torch.no_grad():
        out = network(torch.randn(1, 1, 64, 64))
    assert out.shape == (1, 16, 64, 64)


def test_dino_unet_training_step_leaves_the_encoder_untouched():
    torch.manual_seed(0)
    network = build_dino_unet(build_backbone("vitb16", embed_dim=48, num_heads=2, depth=4), num_classes=3)
    encoder_before = {k: v.clone() for k, v in network.dino_encoder.state_dict().items()}
    decoder_before = network.decoder.seg_layer.weight.detach().clone()
    optimizer = torch.optim.SGD([p for p in network.parameters() if p.requires_grad], lr=0.1)
    network.train()
    logits = network(torch.randn(2, 1, 48, 40))  # not a multiple of 32: padded, then cropped back
    assert logits.shape == (2, 3, 48, 40)
    torch.nn.functional.cross_entropy(logits, torch.randint(0, 3, (2, 48, 40))).backward()
    assert all(p.grad is None for p in network.dino_encoder.parameters())
    assert network.adapter.spm.stem[0].weight.grad.abs().sum() > 0
    optimizer.step()
    for key, value in network.dino_encoder.state_dict().items():
        torch.testing.assert_close(value, encoder_before[key], rtol=0, atol=0)
    assert not torch.equal(network.decoder.seg_layer.weight, decoder_before)


def test_dino_unet_adapts_multichannel_input():
    network = build_dino_unet(build_backbone("vitb16", embed_dim=48, num_heads=2, depth=4), num_classes=2, in_channels=2)
    with torch.no_grad():
        assert network.eval()(torch.randn(1, 2, 32, 32)).shape == (1, 2, 32, 32)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    with baseline_workspace(tmp_path_factory.getbasetemp()) as ws:
        yield ws


def optimizer_group(fold_folder) -> dict:
    from meddinov3.nnunet.checkpoints import read_nnunet_checkpoint

    return read_nnunet_checkpoint(fold_folder / "checkpoint_final.pth")["optimizer_state"]["param_groups"][0]


@pytest.mark.parametrize("method", BASELINES)
def test_baseline_trains_validates_and_predicts_in_nnunet(workspace, method, tmp_path):
    from meddinov3.nnunet.prediction import predict

    folder = train_quickly(workspace, method)
    assert (folder / "checkpoint_final.pth").is_file()
    assert sorted(p.name for p in (folder / "validation").glob("*.nii.gz"))  # nnU-Net's validation ran

    written = predict(workspace.raw / "imagesTs", tmp_path, folder.parent, device="cpu", use_mirroring=False,
                      show_progress=False)
    assert [p.name for p in written] == ["case005.nii.gz"]
    image = sitk.ReadImage(str(workspace.raw / "imagesTs" / "case005_0000.nii.gz"))
    label = sitk.ReadImage(str(written[0]))
    assert label.GetSize() == image.GetSize() and np.allclose(label.GetSpacing(), image.GetSpacing())
    assert set(np.unique(sitk.GetArrayFromImage(label))) <= {0, 1, 2, 3}

    group = optimizer_group(folder)
    sgd = dict(initial_lr=1e-2, weight_decay=3e-5, momentum=0.99, nesterov=True)  # nnU-Net's recipe
    expected = {"nnunet": sgd, "segformer": dict(initial_lr=5e-5, weight_decay=1e-2), "dino-unet": sgd}[method]
    assert {k: group[k] for k in expected} == pytest.approx(expected)
    assert ("betas" in group) == (method == "segformer")  # AdamW for SegFormer, SGD otherwise


def test_dino_unet_encoder_stays_the_pretrained_one_through_nnunet_training(workspace):
    from meddinov3.backbone import load_backbone
    from meddinov3.nnunet.checkpoints import network_state, read_nnunet_checkpoint

    folder = train_quickly(workspace, "dino-unet")
    checkpoint = read_nnunet_checkpoint(folder / "checkpoint_final.pth")
    trained = network_state(checkpoint)
    pretrained = load_backbone(workspace.weights).state_dict()
    for key, value in pretrained.items():
        torch.testing.assert_close(trained[f"dino_encoder.{key}"], value, rtol=0, atol=0)
    # The optimiser holds only the trainable parts: every tensor outside the encoder.
    trainable = [k for k in trained if not k.startswith("dino_encoder.") and "running_" not in k
                 and "num_batches_tracked" not in k]
    assert len(checkpoint["optimizer_state"]["param_groups"][0]["params"]) == len(trainable)
