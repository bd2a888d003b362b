"""The backbone reproduces the reference DINOv3 / MedDINOv3 code on its fixtures."""

import pytest
import torch

from conftest import FIXTURES, load_fixture, relative_error
from meddinov3.backbone import load_backbone

CASES = ["dinov3_tiny_official", "meddinov3_tiny_teacher"]
TOL = 1e-5


@pytest.fixture(scope="module", params=CASES)
def case(request):
    expected = load_fixture(f"{request.param}_expected.pt")
    model = load_backbone(FIXTURES / f"{request.param}.pth")
    return request.param, model, expected


@torch.no_grad()
def test_forward_features(case):
    _, model, ref = case
    out = model.forward_features(ref["inputs"]["x"])
    for key in ("x_norm_clstoken", "x_storage_tokens", "x_norm_patchtokens", "x_prenorm"):
        assert relative_error(out[key], ref["expected"][key]) <= TOL, key


@torch.no_grad()
def test_masked_forward_features(case):
    _, model, ref = case
    out = model.forward_features(ref["inputs"]["x"], masks=ref["inputs"]["masks"])
    assert relative_error(out["x_norm_clstoken"], ref["expected"]["masked_x_norm_clstoken"]) <= TOL
    assert relative_error(out["x_norm_patchtokens"], ref["expected"]["masked_x_norm_patchtokens"]) <= TOL
    assert torch.equal(out["masks"], ref["inputs"]["masks"])


@torch.no_grad()
def test_intermediate_layers_reshaped(case):
    _, model, ref = case
    layers = ref["interaction_layers"]
    out = model.get_intermediate_layers(ref["inputs"]["x"], n=layers, reshape=True, norm=True)
    assert len(out) == len(layers)
    for got, want in zip(out, ref["expected"]["intermediate_reshaped_normed"]):
        assert got.shape == want.shape
        assert relative_error(got, want) <= TOL


@torch.no_grad()
def test_last_layer_with_class_and_storage_tokens(case):
    _, model, ref = case
    (patch, cls, storage), = model.get_intermediate_layers(
        ref["inputs"]["x"], n=1, return_class_token=True, return_extra_tokens=True
    )
    assert relative_error(patch, ref["expected"]["last_layer_patch"]) <= TOL
    assert relative_error(cls, ref["expected"]["last_layer_cls"]) <= TOL
    assert relative_error(storage, ref["expected"]["last_layer_storage"]) <= TOL


@torch.no_grad()
def test_plain_forward_is_normed_cls(case):
    _, model, ref = case
    assert relative_error(model(ref["inputs"]["x"]), ref["expected"]["forward_eval"]) <= TOL


@torch.no_grad()
def test_list_of_crops_matches_separate_calls(case):
    _, model, ref = case
    x, masks = ref["inputs"]["x"], ref["inputs"]["masks"]
    small = x[..., :32, :32]
    outs = model.forward_features([x, small], [masks, None])
    assert relative_error(outs[0]["x_norm_patchtokens"], ref["expected"]["masked_x_norm_patchtokens"]) <= TOL
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
