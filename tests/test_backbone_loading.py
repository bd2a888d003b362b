"""load_backbone reads every checkpoint layout, refuses unsafe or broken files, and exports round-trip."""

import json
import os
import pickle

import pytest
import torch

from conftest import FIXTURES
from meddinov3.backbone import BackboneConfig, CheckpointError, PRESETS, build_backbone, load_backbone
from meddinov3.backbone.checkpoints import CONFIG_METADATA_KEY, infer_config
from meddinov3.backbone.config import ROPE_DTYPES
from meddinov3.backbone.rope import rope_periods
from meddinov3.backbone.export import save_backbone, save_hf

OFFICIAL = FIXTURES / "dinov3_tiny_official.pth"
TEACHER = FIXTURES / "meddinov3_tiny_teacher.pth"


def _same_outputs(a, b, x=None):
    x = torch.randn(1, 3, 32, 48, generator=torch.Generator().manual_seed(0)) if x is None else x
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


@pytest.fixture(scope="module")
def official():
    return load_backbone(OFFICIAL)


def test_infers_official_architecture(official):
    c = official.config
    assert (c.embed_dim, c.depth, c.num_heads, c.n_storage_tokens) == (48, 12, 2, 4)
    assert c.qkv_bias and c.mask_k_bias and c.rope_dtype == "fp32" and c.norm_eps == 1e-5
    assert c.rope_base == 100.0 and c.rope_rescale_coords == 2.0 and c.ffn_layer == "mlp" and c.ffn_ratio == 4.0


def test_infers_meddinov3_teacher_architecture():
    c = load_backbone(TEACHER).config
    assert not c.qkv_bias and c.rope_dtype == "bf16" and c.norm_eps == 1e-6 and c.rope_rescale_coords is None


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {"model": sd},
        lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
        lambda sd: {"student": {f"backbone.{k}": v for k, v in sd.items()}},
        lambda sd: {f"_orig_mod.{k}": v for k, v in sd.items()},
        lambda sd: {"network_weights": {f"dino_encoder.{k}": v for k, v in sd.items()}, "trainer_name": "X"},
    ],
    ids=["model", "state_dict+module", "student+backbone", "compiled", "nnunet"],
)
def test_wrapped_layouts(tmp_path, official, wrap):
    sd = torch.load(OFFICIAL, weights_only=True)
    path = tmp_path / "ckpt.pth"
    torch.save(wrap(sd), path)
    assert _same_outputs(load_backbone(path), official)


def test_nnunet_checkpoint_with_numpy_scalars_in_its_logs(tmp_path, official):
    import numpy as np

    sd = torch.load(OFFICIAL, weights_only=True)
    ckpt = {
        "network_weights": {f"dino_encoder.{k}": v for k, v in sd.items()},
        "logging": {"mean_fg_dice": [np.float64(0.5)], "ema_fg_dice": [np.float32(0.4)]},
        "init_args": {"configuration": "2d_896", "fold": 0},
    }
    torch.save(ckpt, tmp_path / "checkpoint_final.pth")
    assert _same_outputs(load_backbone(tmp_path / "checkpoint_final.pth"), official)


def test_release_teacher_layout_drops_heads():
    raw = torch.load(TEACHER, weights_only=True)["teacher"]
    assert any(k.startswith("dino_head.") for k in raw)
    model = load_backbone(TEACHER)
    assert not any("head" in k for k in model.state_dict())


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch /tmp/meddinov3_pwned",))


def test_pickled_objects_are_refused_without_running(tmp_path):
    marker = "/tmp/meddinov3_pwned"
    if os.path.exists(marker):
        os.remove(marker)
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"cls_token": _RunsCode()}, f)
    with pytest.raises(CheckpointError, match="refused to load.*pickled"):
        load_backbone(path)
    assert not os.path.exists(marker)


def test_pickled_objects_in_zip_checkpoints_are_refused(tmp_path):
    path = tmp_path / "evil_zip.pth"
    torch.save({"model": torch.load(OFFICIAL, weights_only=True), "extra": _RunsCode()}, path)
    with pytest.raises(CheckpointError, match=str(path.name)):
        load_backbone(path)


def test_truncated_file_is_a_clear_error(tmp_path):
    data = OFFICIAL.read_bytes()
    path = tmp_path / "truncated.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_backbone(path)


def test_truncated_safetensors_is_a_clear_error(tmp_path, official):
    path = save_backbone(official, tmp_path / "b")
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_backbone(path)


def test_wrong_layout_names_the_missing_keys(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(8, 3, 7, 7), "fc.weight": torch.zeros(10, 8)}, path)
    with pytest.raises(CheckpointError, match="not a DINOv3 ViT backbone.*cls_token"):
        load_backbone(path)


def test_shape_mismatch_names_key_and_architecture(tmp_path):
    sd = torch.load(OFFICIAL, weights_only=True)
    sd["blocks.3.mlp.fc1.weight"] = torch.zeros(100, 48)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=r"(?s)blocks\.3\.mlp\.fc1\.weight: checkpoint \(100, 48\).*inferred architecture: BackboneConfig"):
        load_backbone(path)


def test_missing_storage_token_is_an_error_not_silently_dropped(tmp_path):
    sd = torch.load(OFFICIAL, weights_only=True)
    del sd["mask_token"]
    torch.save(sd, tmp_path / "m.pth")
    with pytest.raises(CheckpointError, match="missing keys: \\['mask_token'\\]"):
        load_backbone(tmp_path / "m.pth")


def test_missing_file():
    with pytest.raises(CheckpointError, match="no such file"):
        load_backbone("/nonexistent/weights.pth")


def test_safetensors_export_round_trip(tmp_path, official):
    path = save_backbone(official, tmp_path / "backbone")
    assert path.suffix == ".safetensors"
    assert BackboneConfig.from_dict(json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))) == official.config
    assert _same_outputs(load_backbone(path), official)


def test_safetensors_export_keeps_bfloat16_rope(tmp_path):
    teacher = load_backbone(TEACHER)
    again = load_backbone(save_backbone(teacher, tmp_path / "t"))
    assert again.rope_embed.periods.dtype == torch.bfloat16
    assert _same_outputs(again, teacher)


def test_overrides_apply(official):
    model = load_backbone(OFFICIAL, drop_path_rate=0.2)
    assert model.config.drop_path_rate == 0.2 and model.blocks[0].drop_path == 0.2


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_inferred_back_from_their_tensors(name):
    # Built on the meta device: the 7B preset would not fit in memory otherwise.
    with torch.device("meta"):
        model = build_backbone(name)
    state = model.state_dict()
    state["rope_embed.periods"] = rope_periods(model.config, ROPE_DTYPES[model.config.rope_dtype])
    inferred = infer_config(state)
    assert model.config.ffn_width == inferred.ffn_width
    for field in ("embed_dim", "depth", "num_heads", "n_storage_tokens", "qkv_bias", "patch_size",
                  "untie_global_and_local_cls_norm", "rope_dtype", "norm_eps"):
        assert getattr(inferred, field) == getattr(model.config, field), field


def test_preset_parameter_counts():
    with torch.device("meta"):
        counts = {n: sum(p.numel() for p in build_backbone(n).parameters()) for n in ("vits16", "vitb16", "vitl16")}
    # Published DINOv3 sizes: ViT-S 21M, ViT-B 86M, ViT-L 300M.
    assert 21e6 < counts["vits16"] < 22.5e6
    assert 85e6 < counts["vitb16"] < 87.5e6
    assert 300e6 < counts["vitl16"] < 305e6


def test_official_pth_and_its_hugging_face_layout_start_pretraining_as_the_same_model(tmp_path, official):
    """One architecture and one function from both layouts (config.json written as the Hub's DINOv3
    repositories write it, LayerScale init 1.0). The .pth also stores values for the key bias that
    DINOv3 masks out, which Hugging Face does not store: no forward pass or gradient uses them, and
    pretraining zeroes them, so a stage-1 student from either holds the same tensors."""
    from meddinov3.pretrain.config import load_config
    from meddinov3.pretrain.pretrainer import build_student

    save_hf(official, tmp_path / "hf")
    hf_config = json.loads((tmp_path / "hf" / "config.json").read_text(encoding="utf-8"))
    (tmp_path / "hf" / "config.json").write_text(json.dumps({**hf_config, "layerscale_value": 1.0}), encoding="utf-8")
    from_hf = load_backbone(tmp_path / "hf")
    assert from_hf.config == official.config
    assert _same_outputs(from_hf, official)
    pth, hf = official.state_dict(), from_hf.state_dict()
    assert set(pth) == set(hf)
    assert [k for k in pth if not torch.equal(pth[k], hf[k])] == [f"blocks.{i}.attn.qkv.bias" for i in range(12)]

    students = [build_student(load_config("tiny", [f"model.init={init}", "model.arch_overrides={}"])).backbone.state_dict()
                for init in (OFFICIAL, tmp_path / "hf")]
    assert all(torch.equal(students[0][k], students[1][k]) for k in students[0])


def test_release_layout_export_records_its_architecture(tmp_path, official):
    """A bf16-RoPE network of the official recipe (as DINOv3 trains it), saved in the release
    layout: with its recorded architecture it loads as itself (LayerNorm eps 1e-5); the same tensors
    without it would be taken for a MedDINOv3 file (eps 1e-6)."""
    model = load_backbone(OFFICIAL, rope_dtype="bf16")
    teacher = {f"backbone.{k}": v for k, v in model.state_dict().items()}
    torch.save({"teacher": teacher, CONFIG_METADATA_KEY: json.dumps(model.config.to_dict())}, tmp_path / "export.pth")
    torch.save({"teacher": teacher}, tmp_path / "bare.pth")
    assert load_backbone(tmp_path / "export.pth").config == model.config
    assert load_backbone(tmp_path / "bare.pth").config.norm_eps == 1e-6
