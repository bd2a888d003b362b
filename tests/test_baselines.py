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
from meddinov3.baselines.deformable import DeformableCrossAttention, reference_points

BASELINES = ["nnunet", "segformer", "dino-unet"]


def n_params(module: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def linear(i: int, o: int) -> int:
    return i * o + o


def conv(i: int, o: int, k: int, bias: bool = True, groups: int = 1) -> int:
    return i // groups * o * k * k + (o if bias else 0)


def norm(c: int) -> int:  # LayerNorm, BatchNorm or affine InstanceNorm: weight and bias
    return 2 * c


def release_segformer_parameters(in_channels: int, num_classes: int) -> int:
    """The release's SegFormer-B2 counted from the facts sheet (RECIPES.md section 2).

    Per stage: overlapping patch embed (k x k conv + LN); per block: LN, q, kv, proj, the
    spatial-reduction conv + LN when r > 1, LN, mix_skip FFN (fc1, depthwise 3x3 with bias, LN(4C),
    fc2); a LN per stage. Head: a linear per stage to 768, 1x1 fuse conv without bias + BN, 1x1
    classifier, ConvTranspose2d(C, C, 4, 4). (The release's two unused FFN LayerNorms are not built.)
    """
    dims, depths, ratios, kernels, head = (64, 128, 320, 512), (3, 4, 6, 3), (8, 4, 2, 1), (7, 3, 3, 3), 768
    total, previous = 0, 3 if in_channels == 1 else in_channels
    for c, depth, r, k in zip(dims, depths, ratios, kernels):
        total += conv(previous, c, k) + norm(c)
        block = norm(c) + linear(c, c) + linear(c, 2 * c) + linear(c, c)
        if r > 1:
            block += conv(c, c, r) + norm(c)
        hidden = 4 * c
        block += norm(c) + linear(c, hidden) + conv(hidden, hidden, 3, groups=hidden) + norm(hidden) + linear(hidden, c)
        total += depth * block + norm(c)
        previous = c
    total += sum(linear(c, head) for c in dims) + conv(4 * head, head, 1, bias=False) + norm(head)
    return total + conv(head, num_classes, 1) + conv(num_classes, num_classes, 4)


def test_segformer_b2_has_the_release_size():
    assert n_params(build_segformer(num_classes=4, in_channels=1)) == release_segformer_parameters(1, 4)
    assert n_params(build_segformer(num_classes=16, in_channels=2)) == release_segformer_parameters(2, 16)
    # MiT-B2's encoder is the published 24.2M plus the mix_skip FFN's LayerNorm(4C) per block.
    encoder = n_params(build_segformer(4).stages)
    extra_norms = sum(d * norm(4 * c) for c, d in zip((64, 128, 320, 512), (3, 4, 6, 3)))
    assert abs((encoder - extra_norms) / 1e6 - 24.2) < 0.05


def test_segformer_head_learns_its_x4_upsampling_and_tiles_one_channel():
    torch.manual_seed(0)
    network = build_segformer(num_classes=3, in_channels=1).eval()
    upsample = network.head.upsample
    assert isinstance(upsample, torch.nn.ConvTranspose2d) and upsample.kernel_size == upsample.stride == (4, 4)
    assert isinstance(network.head.dropout, torch.nn.Dropout2d) and network.head.dropout.p == 0.2
    x = torch.randn(2, 1, 64, 96)
    with torch.no_grad():
        out = network(x)
        assert out.shape == (2, 3, 64, 96)
        torch.testing.assert_close(out, network(x.expand(-1, 3, -1, -1)), rtol=0, atol=0)
    with pytest.raises(ValueError, match="multiples of 4"):
        network(torch.randn(1, 1, 64, 66))


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


def dino_unet_trainable_parameters(dim: int, widths: tuple[int, ...], num_classes: int) -> int:
    """Dino U-Net's trainable parts counted from the facts sheet (RECIPES.md 3.2-3.4)."""
    spm = conv(3, 64, 3, bias=False) + norm(64) + 2 * (conv(64, 64, 3, bias=False) + norm(64))
    spm += sum(conv(i, o, 3, bias=False) + norm(o) for i, o in ((64, 128), (128, 256), (256, 256)))
    spm += sum(conv(c, dim, 1) for c in (64, 128, 256, 256))
    value, heads, points, hidden = dim // 2, 16, 4, dim // 4
    deformable = linear(dim, value) + linear(dim, heads * points * 2) + linear(dim, heads * points) + linear(value, dim)
    conv_ffn = linear(dim, hidden) + conv(hidden, hidden, 3, groups=hidden) + linear(hidden, dim)
    extractor = 3 * norm(dim) + deformable + conv_ffn
    adapter = spm + 3 * dim + 6 * extractor + conv(dim, dim, 2) + 4 * norm(dim)  # + level embed, up, 4 BN

    rank = 256
    fapm = conv(dim, rank, 1)  # the shared basis
    for oc in widths:
        se = max(1, oc // 16)
        refine = conv(rank, oc, 1) + norm(oc) + conv(oc, oc, 3, groups=oc) + conv(oc, oc, 1) + norm(oc) + conv(oc, oc, 1)
        refine += conv(oc, se, 1) + conv(se, oc, 1)
        shortcut = 0 if oc == rank else conv(rank, oc, 1)
        fapm += conv(dim, rank, 1) + conv(rank, 2 * rank, 1) + refine + shortcut
    upsamplers = sum(conv(oc, oc, 2) for oc in widths)
    decoder = sum(
        conv(coarse, fine, 2) + conv(2 * fine, fine, 3) + norm(fine) + conv(fine, fine, 3) + norm(fine)
        for fine, coarse in zip(widths[:-1], widths[1:])
    )
    return adapter + fapm + upsamplers + decoder + conv(widths[0], num_classes, 1)


def test_dino_unet_vitb_sizes_and_frozen_encoder():
    vit = build_backbone("vitb16")
    vit_params = n_params(vit)
    network = build_dino_unet(vit, num_classes=16)
    assert n_params(network.dino_encoder) == vit_params and n_params(network.dino_encoder, True) == 0
    assert n_params(network, True) == dino_unet_trainable_parameters(768, (32, 64, 128, 256), 16)
    assert n_params(network) - n_params(network, True) == vit_params
    assert len(network.adapter.extractors) == 6 and network.adapter.gradient_checkpointing
    assert {e.drop_path_rate for e in network.adapter.extractors} == {0.3}
    assert {e.attn.num_heads for e in network.adapter.extractors} == {16}


TINY_VIT = dict(embed_dim=64, num_heads=2, depth=4)  # the adapter's 16 heads need a value width divisible by 16


def test_dino_unet_fapm_and_upsampling_structure():
    network = build_dino_unet(build_backbone("vitb16", **TINY_VIT), num_classes=3, widths=(32, 64, 128, 256))
    fapm = network.projection
    assert len([m for m in fapm.modules() if m is fapm.shared]) == 1  # one basis for every scale
    assert isinstance(fapm.scales[-1].shortcut, torch.nn.Identity)  # 256 channels = the rank
    assert all(isinstance(s.shortcut, torch.nn.Conv2d) for s in fapm.scales[:-1])
    up = network.upsamplers[1]
    x = torch.randn(1, 64, 4, 6)
    with torch.no_grad():
        twice = torch.nn.functional.conv_transpose2d(
            torch.nn.functional.conv_transpose2d(x, up.up.weight, up.up.bias, stride=2), up.up.weight, up.up.bias, stride=2
        )
        torch.testing.assert_close(up(x, (16, 24)), twice)


def test_dino_unet_training_step_leaves_the_encoder_untouched():
    torch.manual_seed(0)
    network = build_dino_unet(build_backbone("vitb16", **TINY_VIT), num_classes=3)
    encoder_before = {k: v.clone() for k, v in network.dino_encoder.state_dict().items()}
    decoder_before = network.decoder.seg_layer.weight.detach().clone()
    optimizer = torch.optim.SGD([p for p in network.parameters() if p.requires_grad], lr=0.1)
    network.train()
    assert network.dino_encoder.training  # the release's network.train() reaches the frozen ViT
    logits = network(torch.randn(2, 1, 48, 40))  # not a multiple of 32: padded, then cropped back
    assert logits.shape == (2, 3, 48, 40)
    torch.nn.functional.cross_entropy(logits, torch.randint(0, 3, (2, 48, 40))).backward()
    assert all(p.grad is None for p in network.dino_encoder.parameters())
    assert network.adapter.spm.stem[0].weight.grad.abs().sum() > 0
    optimizer.step()
    for key, value in network.dino_encoder.state_dict().items():
        torch.testing.assert_close(value, encoder_before[key], rtol=0, atol=0)
    assert not torch.equal(network.decoder.seg_layer.weight, decoder_before)


def test_dino_unet_runs_its_frozen_vit_in_bfloat16():
    torch.manual_seed(0)
    network = build_dino_unet(build_backbone("vitb16", **TINY_VIT), num_classes=2).eval()
    x = torch.randn(1, 3, 64, 64)
    maps = network.vit_maps(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = network.dino_encoder.get_intermediate_layers(x, n=[0, 1, 2, 3], reshape=True, norm=True)
    full = network.dino_encoder.get_intermediate_layers(x, n=[0, 1, 2, 3], reshape=True, norm=True)
    for ours, bf16, fp32 in zip(maps, expected, full):
        assert ours.dtype == torch.float32
        torch.testing.assert_close(ours, bf16.float(), rtol=0, atol=0)
        assert not torch.equal(ours, fp32)


def test_dino_unet_tiles_or_cuts_the_input_to_three_channels():
    torch.manual_seed(0)
    network = build_dino_unet(build_backbone("vitb16", **TINY_VIT), num_classes=2).eval()
    x = torch.randn(1, 4, 64, 64)
    with torch.no_grad():
        three = network(x[:, :3])
        torch.testing.assert_close(network(x), three, rtol=0, atol=0)  # more than three: the first three
        two = x[:, :2]
        torch.testing.assert_close(network(two), network(torch.cat([two, two[:, :1]], dim=1)), rtol=0, atol=0)
        one = x[:, :1]
        torch.testing.assert_close(network(one), network(one.expand(-1, 3, -1, -1)), rtol=0, atol=0)


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
    expected = {  # RECIPES.md: nnU-Net's trainer; 2 (SegFormer); 3.4 (Dino U-Net)
        "nnunet": dict(initial_lr=1e-2, weight_decay=3e-5, momentum=0.99, nesterov=True),
        "segformer": dict(initial_lr=2e-5, weight_decay=5e-2, betas=(0.9, 0.98)),
        "dino-unet": dict(initial_lr=1e-3, weight_decay=3e-5, momentum=0.99, nesterov=True),
    }[method]
    assert {k: group[k] for k in expected} == expected


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
