"""Schedules, parameter groups, the tiny three-stage run, checkpoints, resume and export."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from meddinov3.backbone import build_backbone, load_backbone
from meddinov3.backbone.checkpoints import CONFIG_METADATA_KEY, CheckpointError
from meddinov3.pretrain.checkpoint import load_checkpoint
from meddinov3.pretrain.config import load_config
from meddinov3.pretrain.param_groups import parameter_groups
from meddinov3.pretrain.schedules import schedule_values
from meddinov3.pretrain.loop import train

FIXTURES = Path(__file__).parent / "data" / "fixtures"
MEDDINO_TEACHER = FIXTURES / "meddinov3_tiny_teacher.pth"
DINOV3_OFFICIAL = FIXTURES / "dinov3_tiny_official.pth"


# The tiny preset at a quarter of its batch and corpus: these tests check mechanics, not learning
# (test_pretrain_learning.py runs the preset as shipped).
SMALL_BATCH = ["optim.global_batch_size=8", "data.synthetic_slices=31"]


def tiny(output_dir: Path, *overrides: str):
    return load_config("tiny", [f"run.output_dir={output_dir}", *SMALL_BATCH, *overrides])


def mean(values):
    return sum(values) / len(values)


# DINOv3's sqrt_wrt_1024 rule at the paper's global batch of 512: the paper's rates are its base.
SQRT_512 = 4 * (512 / 1024) ** 0.5


def test_stage1_schedules_follow_the_dinov3_vitb_recipe():
    config = load_config("stage1")
    at = lambda iteration: schedule_values(config, iteration)  # noqa: E731
    start, warm, end = at(0), at(12_500), at(100_000)
    peak = 2e-4 * SQRT_512  # lin834's v1 schedule scales the peak, not min_lr
    assert start.lr == 0.0 and warm.lr == pytest.approx(peak) and end.lr == pytest.approx(1e-6)
    assert start.last_layer_lr == 0.0 and at(1249).last_layer_lr == 0.0
    assert at(1250).last_layer_lr == at(1250).lr > 0
    assert start.weight_decay == pytest.approx(0.04) and end.weight_decay == pytest.approx(0.4)
    assert start.momentum == pytest.approx(0.992) and end.momentum == pytest.approx(1.0)
    assert start.teacher_temp == pytest.approx(0.04) and at(37_500).teacher_temp == pytest.approx(0.07)
    assert at(18_750).teacher_temp == pytest.approx(0.055)
    assert at(12_500 + 87_500 // 2).lr == pytest.approx((peak + 1e-6) / 2, rel=1e-3)  # cosine half way
    assert {at(i).dino_local_weight for i in (0, 50_000)} == {1.0}


def test_gram_and_high_res_stages_follow_dinov3_phase_configs():
    stage2, stage3 = load_config("stage2"), load_config("stage3")
    s2 = lambda iteration: schedule_values(stage2, iteration)  # noqa: E731
    s3 = lambda iteration: schedule_values(stage3, iteration)  # noqa: E731
    # Gram weight 0 -> 2 and local DINO weight 1 -> 0.5 over the first 1000 iterations (cosine), then held.
    assert (s2(0).gram_weight, s2(500).gram_weight, s2(1000).gram_weight, s2(9999).gram_weight) == pytest.approx((0, 1, 2, 2))
    assert (s2(0).dino_local_weight, s2(500).dino_local_weight, s2(5000).dino_local_weight) == pytest.approx((1, 0.75, 0.5))
    assert (s3(0).gram_weight, s3(0).dino_local_weight, s3(9999).gram_weight) == pytest.approx((1.5, 0.5, 1.5))
    for at, lr in ((s2, 5e-5 * SQRT_512), (s3, 2.5e-5 * SQRT_512)):
        # Warm-up, then lr, weight decay, EMA momentum and teacher temperature held constant.
        assert at(0).lr == 0.0 and at(1000).lr == pytest.approx(lr) and at(9999).lr == pytest.approx(lr)
        assert {round(at(i).weight_decay, 12) for i in (0, 5000, 9999)} == {0.04}
        assert {round(at(i).momentum, 12) for i in (0, 9999)} == {0.999}
        assert {at(i).teacher_temp for i in (0, 9999)} == {0.07}
        assert at(0).last_layer_lr == at(0).lr
    assert stage3.crops.global_sizes == [512, 768, 768, 768, 768] and stage3.crops.gram_sizes == [768, 1152, 1152, 1152, 1152]
    assert stage3.crops.local_sizes == [112, 112, 168, 224, 336] and stage3.crops.size_probs == [0.3, 0.3, 0.3, 0.05, 0.05]


@pytest.mark.parametrize("stage", ["stage1", "stage2", "stage3"])
def test_every_stage_uses_dinov3s_executed_augmentation_koleo_and_rope(stage):
    config = load_config(stage)
    assert config.loss.koleo_weight == 0.1  # eq. 3's 1 is a slip of the paper
    assert config.crops.horizontal_flip_prob == 0.0
    assert config.intensity.blur_prob_global == (0.0, 0.9) and config.intensity.blur_prob_local == 0.5
    assert config.intensity.solarize_prob_global == (0.0, 0.2)
    assert config.model.arch_overrides["rope_dtype"] == "bf16"
    assert config.model.arch_overrides["rope_rescale_coords"] == 2.0
    assert config.optim.betas == ((0.9, 0.999) if stage == "stage1" else (0.9, 0.99))
    assert (config.optim.clip_grad, config.optim.layerwise_decay) == (3.0, 0.9)


def test_layerwise_decay_and_patch_embed_multiplier():
    backbone = build_backbone("vits16", embed_dim=48, num_heads=2, depth=12)
    head = torch.nn.Linear(4, 4)
    groups = parameter_groups({"backbone": backbone, "dino_head": head}, depth=12, layerwise_decay=0.9, patch_embed_lr_mult=0.2)
    by_param = {id(p): g for g in groups for p in g["params"]}
    lr = lambda p: by_param[id(p)]["lr_multiplier"]  # noqa: E731
    wd = lambda p: by_param[id(p)]["wd_multiplier"]  # noqa: E731
    assert lr(backbone.patch_embed.proj.weight) == pytest.approx(0.9**13 * 0.2)
    assert lr(backbone.cls_token) == pytest.approx(0.9**13)
    assert lr(backbone.blocks[0].attn.qkv.weight) == pytest.approx(0.9**12)
    assert lr(backbone.blocks[11].mlp.fc1.weight) == pytest.approx(0.9)
    assert lr(backbone.norm.weight) == 1.0 and lr(head.weight) == 1.0
    assert wd(backbone.blocks[3].attn.qkv.weight) == 1.0
    assert wd(backbone.blocks[3].norm1.weight) == wd(backbone.blocks[3].ls1.gamma) == wd(head.bias) == 0.0
    n_params = sum(1 for p in list(backbone.parameters()) + list(head.parameters()) if p.requires_grad)
    assert sum(len(g["params"]) for g in groups) == n_params


@pytest.fixture(scope="module")
def three_stages(tmp_path_factory):
    """Tiny stage 1 -> 2 -> 3 on CPU: the real bundled slice plus synthetic CT."""
    root = tmp_path_factory.mktemp("stages")
    stage1 = train(tiny(root / "s1", "optim.iterations=30", "run.log_every=5"))
    s1_export = root / "s1" / "export" / "teacher_checkpoint.pth"
    stage2 = train(
        tiny(root / "s2", "gram.enabled=true", "crops.gram_sizes=[128]", f"model.init={s1_export}",
             "optim.iterations=20", "optim.freeze_last_layer_iterations=0", "run.log_every=5")
    )
    s2_export = root / "s2" / "export" / "teacher_checkpoint.pth"
    stage3 = train(
        tiny(root / "s3", "gram.enabled=true", "crops.global_sizes=[64, 96]", "crops.local_sizes=[32, 48]",
             "crops.gram_sizes=[96, 144]", f"model.init={s2_export}",
             "optim.iterations=20", "optim.freeze_last_layer_iterations=0", "run.log_every=5")
    )
    return root, stage1, stage2, stage3


def test_three_stages_complete_with_their_losses_and_monitors(three_stages):
    """Mechanics only: every stage runs its terms and logs the learning monitors. Whether the tiny
    run learns is test_pretrain_learning.py's question (a falling total loss does not answer it)."""
    _, *stages = three_stages
    for result in stages:
        assert all(torch.isfinite(torch.tensor([h["loss"] for h in result.history])))
        monitored = [h for h in result.history if "dino_global_frac" in h]
        assert [h["iteration"] for h in monitored] == [h["iteration"] for h in result.history if h["iteration"] % 5 == 0]
        # Fractions of ln K; above 1 early on, while the student lags a confident teacher.
        assert all(0 < h["dino_global_frac"] < 2 and 0 < h["ibot_frac"] < 2 for h in monitored)
    assert "gram" not in stages[0].history[0] and "gram" in stages[1].history[0] and "gram" in stages[2].history[0]
    assert {h["global_crop_size"] for h in stages[0].history} == {64}
    assert {(h["global_crop_size"], h["local_crop_size"]) for h in stages[2].history} == {(64, 32), (96, 48)}


def test_stage_exports_load_as_backbones(three_stages):
    root, *_ = three_stages
    x = torch.randn(1, 3, 64, 64)
    for stage in ("s1", "s2", "s3"):
        from_release = load_backbone(root / stage / "export" / "teacher_checkpoint.pth")
        from_safetensors = load_backbone(root / stage / "export" / "backbone.safetensors")
        assert from_release.embed_dim == 48 and from_release.n_blocks == 2
        assert torch.equal(from_release(x), from_safetensors(x))
    # Stage 2 started from stage 1's teacher and moved on from it.
    s1 = load_backbone(root / "s1" / "export" / "teacher_checkpoint.pth").state_dict()
    s2 = load_backbone(root / "s2" / "export" / "teacher_checkpoint.pth").state_dict()
    assert any(not torch.equal(s1[k], s2[k]) for k in s1)


def test_gram_teacher_is_the_initial_teacher_snapshot(three_stages):
    root, *_ = three_stages
    s1_teacher = torch.load(root / "s1" / "export" / "teacher_checkpoint.pth", weights_only=True)["teacher"]
    gram = load_checkpoint(root / "s2" / "checkpoint.pth")["gram_teacher"]
    for key, value in gram.items():
        assert torch.equal(value, s1_teacher[f"backbone.{key}"])


def test_export_has_the_meddinov3_release_layout(tmp_path):
    reference = torch.load(MEDDINO_TEACHER, weights_only=True)["teacher"]
    config = tiny(
        # The release's heads have no BatchNorm (the tiny from-scratch recipe's do).
        tmp_path, f"model.init={MEDDINO_TEACHER}", "model.arch_overrides={}", "model.head_batchnorm=false",
        "model.head_prototypes=32", "model.head_hidden_dim=48",
        "model.head_bottleneck_dim=16", "optim.iterations=2", "optim.global_batch_size=2", "crops.n_local=2",
    )
    result = train(config)
    exported = torch.load(result.exported["teacher_checkpoint"], weights_only=True)
    # The release's one entry, and beside it the architecture the next stage loads (LayerNorm eps,
    # RoPE dtype and rescaling, qkv bias: what tensors cannot show).
    assert list(exported) == ["teacher", CONFIG_METADATA_KEY]
    assert json.loads(exported[CONFIG_METADATA_KEY]) == load_backbone(MEDDINO_TEACHER).config.to_dict()
    assert set(exported["teacher"]) == set(reference)
    for key, value in reference.items():
        assert exported["teacher"][key].shape == value.shape and exported["teacher"][key].dtype == value.dtype, key
    # The heads came from the checkpoint (then trained with a tiny lr for two steps).
    delta = (exported["teacher"]["dino_head.mlp.0.weight"] - reference["dino_head.mlp.0.weight"]).abs().max()
    assert delta < 1e-2
    load_backbone(result.exported["teacher_checkpoint"])


def test_init_from_official_dinov3_checkpoint(tmp_path):
    config = tiny(tmp_path, f"model.init={DINOV3_OFFICIAL}", "model.arch_overrides={}", "optim.iterations=1", "optim.global_batch_size=2", "crops.n_local=1")
    result = train(config)
    exported = load_backbone(result.exported["backbone"])
    official = load_backbone(DINOV3_OFFICIAL)
    assert exported.config.replace(drop_path_rate=0.0) == official.config.replace(drop_path_rate=0.0)


def test_head_mismatch_and_bad_init_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="dino_head does not match model.head_"):
        train(tiny(tmp_path / "a", f"model.init={MEDDINO_TEACHER}", "model.arch_overrides={}", "optim.iterations=1"))
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="broken.pth"):
        train(tiny(tmp_path / "b", f"model.init={broken}", "optim.iterations=1"))


def test_softmax_centering_and_bf16_autocast_paths(tmp_path):
    result = train(tiny(tmp_path, "loss.centering=softmax", "run.precision=bf16", "optim.iterations=3"))
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in result.history)
    objective = load_checkpoint(tmp_path / "checkpoint.pth")["objective"]
    assert objective["dino_center"].abs().sum() > 0 and objective["ibot_center"].abs().sum() > 0


def test_fp16_pretraining_scales_the_loss_and_resumes_the_scale(tmp_path):
    """fp16 (the default on GPUs without bf16) needs loss scaling; its scale is part of the state."""
    result = train(tiny(tmp_path, "run.precision=fp16", "optim.iterations=2"))
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in result.history)
    assert load_checkpoint(tmp_path / "checkpoint.pth")["grad_scaler"]["scale"] > 1
    with pytest.raises(ValueError, match="run.precision must be one of auto, bf16, fp16, fp32"):
        tiny(tmp_path, "run.precision=half")


def _resume_config(output_dir: Path, *overrides: str):
    # Stochastic depth and RoPE jitter on: the RNG state must survive the restart too.
    return tiny(output_dir, "model.drop_path_rate=0.2", "optim.iterations=8", "run.checkpoint_every=1", "gram.enabled=true",
                "crops.gram_sizes=[96]", *overrides)


def _assert_same_state(a: dict, b: dict) -> None:
    for network in ("student", "teacher", "gram_teacher"):
        for key in a[network]:
            assert torch.equal(a[network][key], b[network][key]), f"{network}.{key}"
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(pa["exp_avg_sq"], pb["exp_avg_sq"])
    assert a["iteration"] == b["iteration"]


def test_stopped_and_resumed_run_matches_an_uninterrupted_one(tmp_path):
    full = train(_resume_config(tmp_path / "full"))
    first = train(_resume_config(tmp_path / "split", "run.stop_after=3"))
    assert first.iteration == 3 and first.exported is None
    second = train(_resume_config(tmp_path / "split"))
    assert second.iteration == 8 and [h["iteration"] for h in second.history] == list(range(3, 8))
    assert [h["loss"] for h in first.history + second.history] == [h["loss"] for h in full.history]
    _assert_same_state(load_checkpoint(tmp_path / "full" / "checkpoint.pth"), load_checkpoint(tmp_path / "split" / "checkpoint.pth"))
    logged = (tmp_path / "split" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(logged) == 8


@pytest.fixture
def one_thread():
    """Bit-identical comparisons need the same reduction order in every process: one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_killed_and_resumed_run_matches_an_uninterrupted_one(tmp_path, one_thread):
    overrides = ["optim.iterations=30"]
    script = (
        "import sys; from meddinov3.pretrain.config import load_config; from meddinov3.pretrain.loop import train; "
        "train(load_config('tiny', sys.argv[1:]))"
    )
    args = [f"run.output_dir={tmp_path / 'killed'}", *SMALL_BATCH, "model.drop_path_rate=0.2", "optim.iterations=30", "run.checkpoint_every=1",
            "gram.enabled=true", "crops.gram_sizes=[96]"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-c", script, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if metrics.exists() and len(metrics.read_text(encoding="utf-8").splitlines()) >= 3:
            break
        time.sleep(0.05)
    assert process.poll() is None, f"run ended before it could be killed: {process.stderr.read().decode()[-2000:]}"
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = load_checkpoint(tmp_path / "killed" / "checkpoint.pth")["iteration"]
    assert 0 < killed_at < 30
    resumed = train(_resume_config(tmp_path / "killed", *overrides))
    assert resumed.iteration == 30 and resumed.history[0]["iteration"] == killed_at
    full = train(_resume_config(tmp_path / "full", *overrides))
    _assert_same_state(load_checkpoint(tmp_path / "full" / "checkpoint.pth"), load_checkpoint(tmp_path / "killed" / "checkpoint.pth"))
    assert [h["loss"] for h in full.history[killed_at:]] == [h["loss"] for h in resumed.history]


def test_cli_runs_and_resumes_a_stage(tmp_path):
    from typer.testing import CliRunner

    from meddinov3.cli import app

    runner = CliRunner()
    args = ["pretrain", "--config", "tiny", f"run.output_dir={tmp_path}", "optim.iterations=3"]
    first = runner.invoke(app, args + ["run.stop_after=2"])
    assert first.exit_code == 0, first.output
    assert "stopped at iteration 2 of 3" in first.output
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    assert "teacher_checkpoint" in second.output and (tmp_path / "export" / "backbone.safetensors").exists()
    shown = runner.invoke(app, ["pretrain", "--config", "stage2", "--print-config", "optim.lr=1e-5"])
    assert shown.exit_code == 0 and "lr: 1.0e-05" in shown.output and "gram_sizes:\n  - 512" in shown.output
    bad = runner.invoke(app, ["pretrain", "--config", "tiny", "optim.nope=1"])
    assert bad.exit_code != 0 and "unknown key 'nope'" in bad.output


@pytest.mark.slow
def test_torchrun_two_processes_through_the_cli(tmp_path):
    """The real launcher: torchrun sets the environment, the trainer joins a gloo group."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = Path(sys.executable).parent / "torchrun"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [str(torchrun), "--nproc_per_node=2", f"--master_port={port}", "-m", "meddinov3.cli", "pretrain", "--config", "tiny",
               f"run.output_dir={tmp_path}", "optim.iterations=4"]
    done = subprocess.run(command, env=env, capture_output=True, encoding="utf-8", errors="replace", timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len((tmp_path / "metrics.jsonl").read_text(encoding="utf-8").splitlines()) == 4
    assert load_checkpoint(tmp_path / "checkpoint.pth")["world_size"] == 2
    load_backbone(tmp_path / "export" / "backbone.safetensors")


def test_periodic_teacher_probe_logs_its_dsc_and_draws_it(tmp_path):
    """eval.probe_dataset + eval.every: the teacher's probe DSC (and its random twin's, scored
    once) lands in metrics.jsonl after every N iterations and after the last, and in the figure."""
    from PIL import Image

    from meddinov3.pretrain.metrics import METRICS_NAME, read_metrics
    from meddinov3.synth.dataset import SynthSpec, write_dataset

    dataset = tmp_path / "Dataset991_Probe"
    write_dataset(dataset, SynthSpec(cases=2, test_cases=1, seed=3, shape_zyx=(4, 64, 64)))
    probe = [f"eval.probe_dataset={dataset}", "eval.every=2", "eval.size=32", "eval.max_train_slices=8", "eval.steps=5"]
    train(tiny(tmp_path / "run", "optim.iterations=5", "run.log_every=1", *probe))
    probed = [m for m in read_metrics(tmp_path / "run" / METRICS_NAME) if "probe_dsc" in m]
    assert [m["iteration"] for m in probed] == [1, 3, 4], "after iterations 2 and 4, and after the last (5)"
    assert all(0.0 <= m["probe_dsc"] <= 1.0 for m in probed)
    assert len({m["probe_dsc_random"] for m in probed}) == 1, "the random twin is scored once"
    train(tiny(tmp_path / "plain", "optim.iterations=2"))
    with Image.open(tmp_path / "run" / "learning.png") as with_probe, Image.open(tmp_path / "plain" / "learning.png") as plain:
        assert with_probe.width > plain.width, "a third panel for the probe curve"
