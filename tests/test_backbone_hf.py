"""Parity with Hugging Face `transformers.DINOv3ViTModel`, an independent implementation."""

import pytest
import torch

from conftest import relative_error
from meddinov3.backbone import build_backbone, load_backbone
from meddinov3.backbone.export import save_hf
from meddinov3.backbone.hf import HFConversionError

transformers = pytest.importorskip("transformers")


def _randomize(module: torch.nn.Module, seed: int) -> None:
    """Non-trivial values everywhere (LayerScale near 1, real biases) so miswiring shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 1 and ("norm" in name or "gamma" in name or "lambda" in name):
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def _hf_tokens(hf_model, x):
    with torch.no_grad():
        return hf_model(pixel_values=x).last_hidden_state


def _our_tokens(model, x):
    with torch.no_grad():
        out = model.forward_features(x)
    return torch.cat([out["x_norm_clstoken"][:, None], out["x_storage_tokens"], out["x_norm_patchtokens"]], 1)


@pytest.mark.parametrize("ffn", ["mlp", "swiglu"])
def test_ours_to_hf(tmp_path, ffn):
    model = build_backbone("vitb16", embed_dim=64, num_heads=4, depth=3, ffn_layer=ffn).eval()
    _randomize(model, 0)
    save_hf(model, tmp_path / "hf")
    hf_model = transformers.DINOv3ViTModel.from_pretrained(tmp_path / "hf").eval()
    x = torch.randn(2, 3, 48, 80, generator=torch.Generator().manual_seed(1))
    assert relative_error(_hf_tokens(hf_model, x), _our_tokens(model, x)) <= 1e-5


@pytest.mark.parametrize("gated", [False, True])
def test_hf_to_ours(tmp_path, gated):
    config = transformers.DINOv3ViTConfig(
        hidden_size=64,
        num_attention_heads=4,
        num_hidden_layers=3,
        intermediate_size=128,
        num_register_tokens=4,
        use_gated_mlp=gated,
        hidden_act="silu" if gated else "gelu",
        key_bias=False,
    )
    hf_model = transformers.DINOv3ViTModel(config).eval()
    _randomize(hf_model, 2)
    hf_model.save_pretrained(tmp_path / "hf")
    model = load_backbone(tmp_path / "hf")
    x = torch.randn(2, 3, 64, 32, generator=torch.Generator().manual_seed(3))
    assert relative_error(_our_tokens(model, x), _hf_tokens(hf_model, x)) <= 1e-5
    # The safetensors file alone also loads when its config.json sits beside it.
    weights = next((tmp_path / "hf").glob("*.safetensors"))
    assert relative_error(_our_tokens(load_backbone(weights), x), _hf_tokens(hf_model, x)) <= 1e-5


def test_bfloat16_rope_cannot_be_exported_silently(tmp_path):
    model = build_backbone("meddinov3_vitb16", embed_dim=64, num_heads=4, depth=1)
    with pytest.raises(HFConversionError, match="bf16"):
        save_hf(model, tmp_path / "hf")
