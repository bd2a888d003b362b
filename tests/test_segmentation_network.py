"""MedDINOv3 segmentation networks reproduce the reference logits from reference state dicts."""

import pytest
import torch

from conftest import FIXTURE_TOL, load_fixture, relative_error
from meddinov3.backbone import build_backbone, load_backbone
from meddinov3.segmentation import build_segmenter


def _encoder_state(state_dict):
    return {k: v for k, v in state_dict.items() if k.startswith("dino_encoder.")}


@pytest.mark.parametrize("name", list(FIXTURE_TOL))
@pytest.mark.parametrize("kind", ["primus_multiscale", "primus"])
@torch.no_grad()
def test_reference_logits(name, kind):
    case = load_fixture(f"{name}_expected.pt")[kind]
    backbone = load_backbone(_encoder_state(case["state_dict"]))
    net = build_segmenter(backbone, case["num_classes"], multiscale=kind == "primus_multiscale")
    net.load_state_dict(case["state_dict"], strict=True)
    logits = net.eval()(case["x"])
    assert logits.shape == case["logits"].shape
    assert relative_error(logits, case["logits"]) <= FIXTURE_TOL[name]


def test_decoder_channels_halve_per_stage():
    net = build_segmenter(build_backbone("vitb16", embed_dim=64, num_heads=2, depth=12), num_classes=5)
    convs = [m for m in net.up_projection.decode.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [c.in_channels for c in convs] == [256, 128, 64, 32]
    assert net.up_projection.decode[-1].out_channels == 5


def test_input_not_multiple_of_patch_size_is_a_clear_error():
    net = build_segmenter(build_backbone("vitb16", embed_dim=32, num_heads=2, depth=4), 2, interaction_layers=(1, 3))
    with pytest.raises(ValueError, match="multiple of the patch size"):
        net(torch.zeros(1, 1, 40, 48))


def test_interaction_layers_must_exist():
    with pytest.raises(ValueError, match="do not exist"):
        build_segmenter(build_backbone("vitb16", embed_dim=32, num_heads=2, depth=4), 2)


@torch.no_grad()
def test_multichannel_policy_matches_grayscale_on_identical_channels():
    torch.manual_seed(0)
    backbone = build_backbone("vitb16", embed_dim=32, num_heads=2, depth=4).eval()
    x = torch.randn(1, 1, 32, 32)
    reference = backbone(x.expand(-1, 3, -1, -1))
    net = build_segmenter(backbone, 2, interaction_layers=(1, 3), in_channels=2).eval()
    assert net.dino_encoder.patch_embed.proj.in_channels == 2
    assert torch.allclose(net.dino_encoder(x.expand(-1, 2, -1, -1)), reference, atol=1e-5)
    assert net(x.expand(-1, 2, -1, -1)).shape == (1, 2, 32, 32)


def _textbook_channel_norm(norm, x):
    """LayerNorm over channels written out in float64, the definition the decoder must meet."""
    x = x.double()
    mean = x.mean(1, keepdim=True)
    var = (x - mean).pow(2).mean(1, keepdim=True)
    return norm.weight.double()[:, None, None] * (x - mean) / torch.sqrt(var + norm.eps) + norm.bias.double()[:, None, None]


def _channel_norm():
    from meddinov3.segmentation.decoder import ChannelLayerNorm

    torch.manual_seed(0)
    norm = ChannelLayerNorm(24)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    return norm


def test_channel_norm_is_layernorm_over_channels_in_float32():
    norm = _channel_norm()
    x = torch.randn(2, 24, 7, 5) * 3 + 1
    out = norm(x)
    assert out.dtype == torch.float32 and out.shape == x.shape
    assert relative_error(out, _textbook_channel_norm(norm, x)) <= 1e-6


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_channel_norm_keeps_the_activation_dtype_under_autocast(dtype):
    """Mixed precision stores the norm's output (and the GELU after it) at 2 bytes, not 4; the
    statistics are float32 inside, so fp16 activations far beyond 256 do not overflow the variance."""
    norm = _channel_norm()
    x = torch.randn(2, 24, 7, 5) * 2000
    with torch.autocast("cpu", dtype=dtype):
        out = norm(x.to(dtype))
    assert out.dtype == dtype
    assert torch.isfinite(out).all()
    assert relative_error(out, _textbook_channel_norm(norm, x.to(dtype))) <= 1e-2


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_channel_norm_gives_its_kernel_one_dtype(dtype):
    """CUDA's layer_norm refuses an fp32 weight with a half-precision input (CPU's accepts it,
    which let this reach the GPU once); every call, forward and backward, gets one dtype."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class LayerNormDtypes(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.calls = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if "layer_norm" in func.__name__:
                tensors = [a for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()]
                self.calls.append((func.__name__, {t.dtype for t in tensors}))
            return func(*args, **(kwargs or {}))

    norm = _channel_norm()
    x = torch.randn(2, 24, 7, 5, dtype=dtype, requires_grad=True)
    with LayerNormDtypes() as seen, torch.autocast("cpu", dtype=dtype):
        norm(x).float().sum().backward()
    assert {name.split(".")[0] for name, _ in seen.calls} == {"native_layer_norm", "native_layer_norm_backward"}
    assert all(dtypes == {dtype} for _, dtypes in seen.calls), seen.calls
    assert norm.weight.grad.dtype == torch.float32
