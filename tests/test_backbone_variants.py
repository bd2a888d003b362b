"""Architecture options beyond the two fixture recipes: presets, FFNs, norms, RoPE modes, training-only paths."""

import pytest
import torch

from meddinov3.backbone import PRESETS, build_backbone, load_backbone
from meddinov3.backbone.export import save_backbone

X = torch.randn(2, 3, 32, 64, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_recipe_runs_and_round_trips_at_small_width(tmp_path, name):
    model = build_backbone(name, embed_dim=64, num_heads=4, depth=2).eval()
    again = load_backbone(save_backbone(model, tmp_path / name))
    with torch.no_grad():
        assert torch.equal(again(X), model(X))


@pytest.mark.parametrize("overrides", [
    {"ffn_layer": "swiglu64", "ffn_ratio": 3.0},
    {"norm_layer": "rmsnorm"},
    {"untie_cls_and_patch_norms": True},
    {"n_storage_tokens": 0, "layerscale_init": None, "qkv_bias": False},
    {"rope_base": None, "rope_min_period": 0.5, "rope_max_period": 20.0},
], ids=["swiglu64", "rmsnorm", "untied", "plain", "minmax-periods"])
def test_architecture_is_inferred_from_raw_state_dict(overrides):
    model = build_backbone("vitb16", embed_dim=64, num_heads=4, depth=2, **overrides).eval()
    again = load_backbone(model.state_dict())
    # An FFN is identified by its width: (swiglu, ratio 3) and (swiglu64, ratio 3) are the same network here.
    assert again.config.ffn_width == model.config.ffn_width
    for key, value in overrides.items():
        if key.startswith("ffn_"):
            continue
        assert getattr(again.config, key) == (pytest.approx(value) if value is not None else None), key
    with torch.no_grad():
        assert torch.equal(again(X), model(X))


def test_swiglu_width_follows_dinov3_alignment():
    with torch.device("meta"):
        assert build_backbone("vits16plus").config.ffn_width == 1536
        assert build_backbone("vith16plus", depth=1).blocks[0].mlp.w1.out_features == 5120
        assert build_backbone("vit7b16", depth=1).blocks[0].mlp.w3.in_features == 8192


@pytest.mark.parametrize("mode,expected_max", [("separate", (0.75, 0.875)), ("max", (-0.125, 0.875)), ("min", (0.75, 2.75))])
def test_rope_coordinate_normalisation(mode, expected_max):
    model = build_backbone("vitb16", embed_dim=64, num_heads=4, depth=1, rope_normalize_coords=mode)
    coords = model.rope_embed.patch_coords(4, 8)
    assert coords.shape == (32, 2)
    assert coords[:, 0].max().item() == pytest.approx(expected_max[0])
    assert coords[:, 1].max().item() == pytest.approx(expected_max[1])


def test_rope_augmentation_only_in_training():
    model = build_backbone("vitb16", embed_dim=64, num_heads=4, depth=1, rope_shift_coords=0.1, rope_jitter_coords=1.2)
    model.eval()
    assert torch.equal(model.rope_embed(2, 3)[0], model.rope_embed(2, 3)[0])
    model.train()
    assert not torch.equal(model.rope_embed(2, 3)[0], model.rope_embed(2, 3)[0])


def test_stochastic_depth_drops_samples_in_training_only():
    torch.manual_seed(0)
    model = build_backbone("vitb16", embed_dim=64, num_heads=4, depth=4, drop_path_rate=0.5, layerscale_init=1.0)
    x = torch.randn(8, 3, 32, 32)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


def test_local_crop_cls_norm_is_used_for_second_crop_list_entry_in_training():
    model = build_backbone("vitb16", embed_dim=64, num_heads=4, depth=1, untie_global_and_local_cls_norm=True)
    with torch.no_grad():
        model.local_cls_norm.weight.fill_(3.0)
    small = X[..., :32, :32]
    model.train()
    globals_, locals_ = model.forward_features([X, small])
    model.eval()
    assert torch.allclose(locals_["x_norm_clstoken"], 3 * model.forward_features(small)["x_norm_clstoken"], atol=1e-5)
    assert torch.allclose(globals_["x_norm_clstoken"], model.forward_features(X)["x_norm_clstoken"], atol=1e-5)


def test_intermediate_layers_by_count_and_errors():
    model = build_backbone("vitb16", embed_dim=64, num_heads=4, depth=3).eval()
    last_two = model.get_intermediate_layers(X, n=2)
    assert len(last_two) == 2 and last_two[1].shape == (2, 8, 64)
    assert torch.equal(last_two[1], model.forward_features(X)["x_norm_patchtokens"])
    with pytest.raises(ValueError, match="out of range"):
        model.get_intermediate_layers(X, n=[5])
    with pytest.raises(ValueError, match="multiple of the patch size"):
        model(torch.zeros(1, 3, 30, 32))
