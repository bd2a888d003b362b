"""The stage presets as DINOv3 and MedDINOv3 ran them (issue 21, RECIPES section 5): DINOv3's
learning-rate scaling, the start from DINOv3 ViT-B/16 by its Hub alias, the EMA teacher kept for
stage 2's Gram teacher, the architecture carried from stage to stage, and each stage's total
objective recomputed from its logged terms. Every preset runs at tiny sizes from a tiny ViT laid
into a Hugging Face cache as `dinov3-vitb16` (nothing is downloaded)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch
import yaml
from huggingface_hub import constants
from typer.testing import CliRunner

from hub_fakes import lay_out_cached_repo
from meddinov3.backbone import build_backbone, load_backbone
from meddinov3.backbone.export import save_hf
from meddinov3.cli import app
from meddinov3.pretrain.checkpoint import TEACHER_EXPORT, load_checkpoint, snapshot_folder
from meddinov3.pretrain.config import load_config
from meddinov3.pretrain.data import build_corpus
from meddinov3.pretrain.distributed import DistInfo
from meddinov3.pretrain.lr_scaling import lr_scale
from meddinov3.pretrain.loop import make_loader, train
from meddinov3.pretrain.pretrainer import Pretrainer

DINOV3_VITB = "facebook/dinov3-vitb16-pretrain-lvd1689m"
BATCH = 4
# Global crops of 4 x 4 patches or more: iBOT masks 10-50 % of a crop's patches, none of 2 x 2.
SIZES = {
    "stage1": ["crops.global_sizes=[64]", "crops.local_sizes=[32]"],
    "stage2": ["crops.global_sizes=[64]", "crops.local_sizes=[32]", "crops.gram_sizes=[96]"],
    "stage3": ["crops.global_sizes=[64, 80]", "crops.local_sizes=[32, 32]", "crops.gram_sizes=[96, 128]",
               "crops.size_probs=[0.5, 0.5]"],
}


@pytest.fixture
def dinov3_hub(tmp_path, monkeypatch):
    """`dinov3-vitb16` in the Hugging Face cache, read offline: a tiny official-recipe ViT."""
    cache = tmp_path / "hf_cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    torch.manual_seed(0)
    save_hf(build_backbone("vitb16", embed_dim=48, num_heads=2, depth=2).eval(), tmp_path / "hf")
    files = {f.name: f.read_bytes() for f in (tmp_path / "hf").iterdir()}
    lay_out_cached_repo(cache, DINOV3_VITB, files, "a" * 40)
    return cache


def tiny_stage(stage: str, output_dir: Path, *overrides: str):
    """The preset with its weights, schedules and augmentation; tiny crops, heads and batch."""
    return load_config(stage, [
        f"run.output_dir={output_dir}", "run.device=cpu", "run.log_every=1", "data.bundled_slice=true",
        "data.synthetic_slices=7", "data.num_workers=0", f"optim.global_batch_size={BATCH}",
        "model.head_prototypes=32", "model.head_hidden_dim=32", "model.head_bottleneck_dim=16", *SIZES[stage], *overrides,
    ])


def test_dinov3_scaling_rules():
    """DINOv3 configs/config.py: sqrt_wrt_1024 is 4 sqrt(B / 1024), linear_wrt_256 is B / 256."""
    assert lr_scale("sqrt_wrt_1024", 512) == pytest.approx(2 * math.sqrt(2))
    assert lr_scale("sqrt_wrt_1024", 1024) == 4.0 and lr_scale("linear_wrt_256", 512) == 2.0
    assert lr_scale("none", 512) == 1.0
    with pytest.raises(ValueError, match="optim.scaling_rule must be one of none, linear_wrt_256, sqrt_wrt_1024"):
        load_config("stage1", ["optim.scaling_rule=sqrt"])


@pytest.mark.parametrize("stage, base, scale_end", [("stage1", 2e-4, False), ("stage2", 5e-5, True), ("stage3", 2.5e-5, True)])
def test_stage_rates_are_the_papers_scaled_by_the_global_batch(stage, base, scale_end):
    """The paper's rate is the base of sqrt_wrt_1024 (lin834); the rate trained with follows the batch."""
    for batch in (512, 1024, 64):
        optim = load_config(stage, [f"optim.global_batch_size={batch}"]).optim
        factor = 4 * math.sqrt(batch / 1024)
        assert (optim.lr, optim.scaling_rule) == (base, "sqrt_wrt_1024")
        assert optim.lr_effective == pytest.approx(base * factor)
        assert optim.min_lr_effective == pytest.approx(optim.min_lr * (factor if scale_end else 1.0))
    assert load_config(stage, ["optim.scaling_rule=none"]).optim.lr_effective == base


def test_stage1_starts_from_dinov3_vitb16_and_keeps_the_papers_gram_teacher():
    stage1, stage2 = load_config("stage1"), load_config("stage2")
    assert stage1.model.init == "dinov3-vitb16" and stage1.run.keep_teacher_at == [20_000]
    assert stage2.gram.teacher == str(snapshot_folder(stage1.run.output_dir, 20_000) / TEACHER_EXPORT)
    with pytest.raises(ValueError, match="model.init=random"):
        load_config("stage1", ["model.init=null"])


def test_random_start_only_when_asked_and_with_a_warning(tmp_path, caplog):
    from meddinov3.pretrain.pretrainer import build_student

    caplog.set_level(logging.WARNING, logger="meddinov3.pretrain")
    build_student(tiny_stage("stage1", tmp_path, "model.init=random", "model.arch=vits16",
                             "model.arch_overrides={embed_dim: 48, num_heads: 2, depth: 1}"))
    assert "--config tiny" in caplog.text and "dinov3-vitb16" in caplog.text
    caplog.clear()
    build_student(load_config("tiny", ["optim.global_batch_size=4"]))  # the from-scratch recipe itself
    assert caplog.text == ""


def test_offline_without_the_weights_is_one_line_saying_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    result = CliRunner().invoke(app, ["pretrain", "--config", "stage1", f"run.output_dir={tmp_path / 'run'}"])
    assert result.exit_code == 1
    message = " ".join(result.output.split())
    assert message.startswith("error: dinov3-vitb16 (hf://facebook/dinov3-vitb16-pretrain-lvd1689m): not in")
    assert "`meddinov3 weights dinov3-vitb16`" in message and "Traceback" not in result.output


# Weights of the total objective by DINOv3's ssl_meta_arch (RECIPES 4.2) and the paper, written out
# here rather than read from the code under test: 2 global crops, 8 local crops, same-crop global
# pairs skipped -> 2 global and 16 local (student, teacher) pairs; iBOT 1; KoLeo 0.1 on each of the
# 2 global crops' CLS tokens (the logged term is their mean). Local-crop and Gram weights at the
# iteration probed: stage 2 half-way through its cosine ramps (1 -> 0.5, 0 -> 2 over 1000).
GLOBAL_PAIRS, LOCAL_PAIRS, IBOT, KOLEO, N_GLOBAL = 2, 16, 1.0, 0.1, 2
AT = {"stage1": (0, 1.0, None), "stage2": (500, 0.75, 1.0), "stage3": (0, 0.5, 1.5)}


@pytest.mark.parametrize("stage", ["stage1", "stage2", "stage3"])
def test_total_objective_is_the_weighted_sum_of_its_logged_terms(stage, dinov3_hub, tmp_path):
    iteration, local_weight, gram_weight = AT[stage]
    config = tiny_stage(stage, tmp_path, "model.init=dinov3-vitb16", "gram.teacher=null")
    trainer = Pretrainer(config, torch.device("cpu"))
    trainer.iteration = iteration
    loader = make_loader(build_corpus(config), config, DistInfo(), trainer.patch_size, iteration, iteration + 1,
                         torch.device("cpu"))
    m = trainer.step(next(iter(loader)))

    dino = (GLOBAL_PAIRS * m["dino_global"] + local_weight * LOCAL_PAIRS * m["dino_local"]) / (GLOBAL_PAIRS + LOCAL_PAIRS)
    expected = dino + IBOT * m["ibot"] + KOLEO * N_GLOBAL * m["koleo"]
    if gram_weight is None:
        assert "gram" not in m
    else:
        assert m["gram"] > 0 and m["gram_weight"] == pytest.approx(gram_weight)
        expected += gram_weight * m["gram"]
    assert m.get("dino_local_weight", 1.0) == pytest.approx(local_weight)
    # Every term large enough that a wrong weight shows (KoLeo entering with 1 instead of 0.1 x 2
    # moves the total by 0.8 x koleo).
    assert min(abs(m[k]) for k in ("dino_global", "dino_local", "ibot", "koleo")) > 1e-2, m
    assert m["loss"] == pytest.approx(expected, rel=1e-5), (m, expected)


def test_stages_carry_the_network_keep_snapshots_and_record_rates(dinov3_hub, tmp_path, caplog):
    """Stage 1 (from dinov3-vitb16, RoPE in bf16 as DINOv3 trains) -> 2 -> 3: the same network at
    every step (LayerNorm eps 1e-5 of the official weights, not the 1e-6 a bf16-RoPE file without
    recorded architecture would be taken for); stage 2's Gram teacher is stage 1's kept snapshot."""
    caplog.set_level(logging.INFO, logger="meddinov3.pretrain")
    s1 = train(tiny_stage("stage1", tmp_path / "s1", "optim.iterations=3", "run.keep_teacher_at=[2]"))
    snapshot = snapshot_folder(tmp_path / "s1", 2) / TEACHER_EXPORT
    s2 = train(tiny_stage("stage2", tmp_path / "s2", f"model.init={s1.exported['teacher_checkpoint']}",
                          f"gram.teacher={snapshot}", "optim.iterations=2"))
    s3 = train(tiny_stage("stage3", tmp_path / "s3", f"model.init={s2.exported['teacher_checkpoint']}",
                          "gram.teacher=null", "optim.iterations=2"))

    start = load_backbone("dinov3-vitb16").config.replace(rope_dtype="bf16", rope_rescale_coords=2.0)
    assert start.norm_eps == 1e-5 and start.qkv_bias and start.mask_k_bias
    for result in (s1, s2, s3):
        for file in result.exported.values():
            assert load_backbone(file).config == start, file
    assert load_backbone(snapshot).config == start

    # The Gram teacher of stage 2 is the snapshot, and the log says so.
    assert f"Gram teacher: {snapshot}" in caplog.text
    kept = load_backbone(snapshot).state_dict()
    gram = load_checkpoint(tmp_path / "s2" / "checkpoint.pth")["gram_teacher"]
    assert all(torch.equal(gram[k], kept[k]) for k in kept)

    # The rate trained with: logged, stored beside the base, and the one the schedule used.
    factor = 4 * math.sqrt(BATCH / 1024)
    assert f"lr {2e-4 * factor:.4g} = base 0.0002 x {factor:.4g} (sqrt_wrt_1024 at global batch {BATCH})" in caplog.text
    saved = yaml.safe_load((tmp_path / "s1" / "config.yaml").read_text(encoding="utf-8"))["optim"]
    assert (saved["lr"], saved["lr_effective"]) == (2e-4, pytest.approx(2e-4 * factor))
    assert s1.history[1]["lr"] == pytest.approx(2e-4 * factor / 12_500)  # one step into the warm-up


def test_resuming_keeps_the_teacher_snapshots(dinov3_hub, tmp_path):
    args = ["optim.iterations=3", "run.keep_teacher_at=[1]"]
    train(tiny_stage("stage1", tmp_path, *args, "run.stop_after=1"))
    snapshot = snapshot_folder(tmp_path, 1) / TEACHER_EXPORT
    before = (snapshot.read_bytes(), snapshot.stat().st_mtime_ns)
    # The snapshot is the EMA teacher after iteration 1: the checkpoint the run stopped with.
    teacher = load_checkpoint(tmp_path / "checkpoint.pth")["teacher"]
    released = torch.load(snapshot, weights_only=True)["teacher"]
    assert set(released) == set(teacher) and all(torch.equal(released[k], teacher[k]) for k in teacher)
    assert (snapshot.parent / "backbone.safetensors").exists()

    resumed = train(tiny_stage("stage1", tmp_path, *args))
    assert resumed.iteration == 3 and resumed.exported is not None
    assert (snapshot.read_bytes(), snapshot.stat().st_mtime_ns) == before
