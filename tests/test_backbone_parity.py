"""The backbone reproduces the reference DINOv3 / MedDINOv3 code on its fixtures."""

import math

import pytest
import torch

from conftest import FIXTURE_TOL, FIXTURES, load_fixture, relative_error
from meddinov3.backbone import layers, load_backbone
from meddinov3.backbone.rope import apply_rope

CASES = list(FIXTURE_TOL)


@pytest.fixture(scope="module", params=CASES)
def case(request):
    expected = load_fixture(f"{request.param}_expected.pt")
    model = load_backbone(FIXTURES / f"{request.param}.pth")
    return FIXTURE_TOL[request.param], model, expected


@torch.no_grad()
def test_forward_features(case):
    tol, model, ref = case
    out = model.forward_features(ref["inputs"]["x"])
    for key in ("x_norm_clstoken", "x_storage_tokens", "x_norm_patchtokens", "x_prenorm"):
        assert relative_error(out[key], ref["expected"][key]) <= tol, key


@torch.no_grad()
def test_masked_forward_features(case):
    tol, model, ref = case
    out = model.forward_features(ref["inputs"]["x"], masks=ref["inputs"]["masks"])
    assert relative_error(out["x_norm_clstoken"], ref["expected"]["masked_x_norm_clstoken"]) <= tol
    assert relative_error(out["x_norm_patchtokens"], ref["expected"]["masked_x_norm_patchtokens"]) <= tol
    assert torch.equal(out["masks"], ref["inputs"]["masks"])


@torch.no_grad()
def test_intermediate_layers_reshaped(case):
    tol, model, ref = case
    layers = ref["interaction_layers"]
    out = model.get_intermediate_layers(ref["inputs"]["x"], n=layers, reshape=True, norm=True)
    assert len(out) == len(layers)
    for got, want in zip(out, ref["expected"]["intermediate_reshaped_normed"]):
        assert got.shape == want.shape
        assert relative_error(got, want) <= tol


@torch.no_grad()
def test_last_layer_with_class_and_storage_tokens(case):
    tol, model, ref = case
    (patch, cls, storage), = model.get_intermediate_layers(
        ref["inputs"]["x"], n=1, return_class_token=True, return_extra_tokens=True
    )
    assert relative_error(patch, ref["expected"]["last_layer_patch"]) <= tol
    assert relative_error(cls, ref["expected"]["last_layer_cls"]) <= tol
    assert relative_error(storage, ref["expected"]["last_layer_storage"]) <= tol


@torch.no_grad()
def test_plain_forward_is_normed_cls(case):
    tol, model, ref = case
    assert relative_error(model(ref["inputs"]["x"]), ref["expected"]["forward_eval"]) <= tol


@torch.no_grad()
def test_list_of_crops_matches_separate_calls(case):
    tol, model, ref = case
    x, masks = ref["inputs"]["x"], ref["inputs"]["masks"]
    small = x[..., :32, :32]
    outs = model.forward_features([x, small], [masks, None])
    assert relative_error(outs[0]["x_norm_patchtokens"], ref["expected"]["masked_x_norm_patchtokens"]) <= tol
    assert torch.equal(outs[1]["x_norm_clstoken"], model.forward_features(small)["x_norm_clstoken"])


def test_meddinov3_rope_runs_in_bfloat16_and_fp32_override_changes_outputs():
    name = "meddinov3_tiny_teacher"
    ref = load_fixture(f"{name}_expected.pt")
    bf16 = load_backbone(FIXTURES / f"{name}.pth")
    fp32 = load_backbone(FIXTURES / f"{name}.pth", rope_dtype="fp32")
    assert bf16.rope_embed.periods.dtype == torch.bfloat16
    assert fp32.rope_embed.periods.dtype == torch.float32
    with torch.no_grad():
        err = relative_error(fp32(ref["inputs"]["x"]), ref["expected"]["forward_eval"])
    # The reference computes RoPE in bfloat16; float32 RoPE is a different function (~1e-3).
    assert err > 1e-4


def _explicit_rope(periods: torch.Tensor, h: int, w: int, dtype: torch.dtype):
    """DINOv3's RoPE written out step by step in `dtype`: patch centres in [-1, 1], 2 pi c / period."""
    rows = torch.arange(0.5, h, dtype=dtype) / h
    cols = torch.arange(0.5, w, dtype=dtype) / w
    coords = 2.0 * torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1).flatten(0, 1) - 1.0
    angles = (2 * math.pi * coords[:, :, None] / periods.to(dtype)[None, None, :]).flatten(1, 2).tile(2)
    return torch.sin(angles), torch.cos(angles)


def _explicit_rotation(t: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor, n_prefix: int) -> torch.Tensor:
    t = t.to(sin.dtype)
    patches = t[:, :, n_prefix:]
    half = patches.shape[-1] // 2
    rotated = torch.cat((-patches[..., half:], patches[..., :half]), dim=-1)
    return torch.cat((t[:, :, :n_prefix], patches * cos + rotated * sin), dim=-2)


def test_meddinov3_rope_tables_and_rotation_are_bfloat16_computations(monkeypatch):
    """The 1e-3 end-to-end bound cannot always tell bfloat16 from float32 RoPE: check RoPE itself."""
    model = load_backbone(FIXTURES / "meddinov3_tiny_teacher.pth").eval()
    h, w = 5, 3  # the fixture's 80 x 48 input
    sin, cos = model.rope_embed(h, w)
    assert sin.dtype == cos.dtype == torch.bfloat16
    want_sin, want_cos = _explicit_rope(model.rope_embed.periods, h, w, torch.bfloat16)
    assert torch.equal(sin, want_sin) and torch.equal(cos, want_cos)
    fp32_sin, fp32_cos = _explicit_rope(model.rope_embed.periods, h, w, torch.float32)
    assert (sin.float() - fp32_sin).abs().max() > 1e-3  # the check can tell the two dtypes apart

    q, k = torch.randn(2, 2, 2, 1 + 4 + h * w, 24, generator=torch.Generator().manual_seed(0))
    rot_q, rot_k = apply_rope(q, k, (sin, cos))
    assert rot_q.dtype == torch.float32
    assert torch.equal(rot_q, _explicit_rotation(q, sin, cos, 5).float())
    assert torch.equal(rot_k, _explicit_rotation(k, sin, cos, 5).float())
    assert not torch.allclose(rot_q, _explicit_rotation(q, fp32_sin, fp32_cos, 5), atol=1e-4)

    # and the model's attention hands exactly these bfloat16 tables to the rotation
    seen = []

    def recording_rope(q, k, rope):
        seen.append(rope[0].dtype)
        return apply_rope(q, k, rope)

    monkeypatch.setattr(layers, "apply_rope", recording_rope)
    with torch.no_grad():
        model(torch.zeros(1, 3, 16 * h, 16 * w))
    assert seen == [torch.bfloat16] * model.config.depth
