"""Numeric precision through the real nnU-Net trainers on the CPU: the forward pass runs in the
chosen dtype on every device (nnU-Net itself autocasts only on CUDA), fp16 alone has a gradient
scaler, the weights stay float32, the choice is recorded in the plans, and `auto` picks what the
device does best."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from conftest import FIXTURES
from meddinov3.devices import pick_device
from meddinov3.nnunet.methods import METHODS
from meddinov3.nnunet.network import unwrap
from meddinov3.nnunet.spec import WEIGHTS_ENV, build_spec, spec_in_plans
from meddinov3.nnunet.standalone import standalone_trainer, synthetic_batch, use_nnunet_folders
from meddinov3.precision import DTYPES, default_precision, resolve_precision

TEACHER = FIXTURES / "meddinov3_tiny_teacher.pth"
TINY = {"embed_dim": 48, "num_heads": 2, "depth": 4}
VIT_METHODS = [name for name, method in METHODS.items() if method.backbone_preset is not None]


@pytest.fixture
def nnunet_folders(tmp_path, monkeypatch):
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_compile"):
        monkeypatch.setenv(name, "")  # restored after the test
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    return use_nnunet_folders(tmp_path)


def _trainer(method: str, precision: str | None, batch_size: int = 2, weights=TEACHER):
    needs_weights = METHODS[method].needs_weights
    spec = build_spec(METHODS[method], weights=weights if needs_weights else None,
                      backbone_overrides=None if needs_weights else TINY)
    spec.precision = precision
    torch.manual_seed(0)
    return standalone_trainer(spec, (64, 48), num_classes=3, batch_size=batch_size, device=torch.device("cpu"))


def _output_dtypes(trainer) -> list[torch.dtype]:
    dtypes: list[torch.dtype] = []
    unwrap(trainer.network).register_forward_hook(lambda module, args, output: dtypes.append(output.dtype))
    return dtypes


@pytest.mark.parametrize("method", VIT_METHODS)
def test_bf16_training_steps_of_every_vit_method(nnunet_folders, method, dino_unet_weights):
    # Dino U-Net's adapter (16 deformable heads) needs a wider ViT than the MedDINOv3 fixture.
    trainer = _trainer(method, "bf16", weights=dino_unet_weights if method == "dino-unet" else TEACHER)
    dtypes = _output_dtypes(trainer)
    trainable = [p for p in trainer.network.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in trainable]
    batch = synthetic_batch(trainer, torch.Generator().manual_seed(0))
    losses = [float(trainer.train_step(batch)["loss"]) for _ in range(2)]
    assert dtypes == [torch.bfloat16, torch.bfloat16]
    assert all(math.isfinite(loss) for loss in losses)
    assert trainer.grad_scaler is None
    assert all(p.dtype == torch.float32 for p in trainer.network.parameters())
    assert any(not torch.equal(p, b) for p, b in zip(trainable, before))
    # Validation runs at the same precision, and the plans saved with the model record it.
    trainer.network.eval()
    with torch.no_grad():
        trainer.validation_step(batch)
    assert dtypes[-1] == torch.bfloat16
    assert spec_in_plans(trainer.plans_manager.plans, "2d").precision == "bf16"


@pytest.mark.parametrize("method", ["scratch", "meddinov3"])  # float32 and bfloat16 RoPE
def test_fp16_scales_the_loss(nnunet_folders, method):
    fp16 = _trainer(method, "fp16")
    dtypes = _output_dtypes(fp16)
    loss = float(fp16.train_step(synthetic_batch(fp16))["loss"])
    assert dtypes == [torch.float16] and math.isfinite(loss)
    assert isinstance(fp16.grad_scaler, torch.amp.GradScaler) and fp16.grad_scaler.get_scale() > 1


def test_fp32_does_not_autocast(nnunet_folders):
    fp32 = _trainer("scratch", "fp32")
    dtypes = _output_dtypes(fp32)
    fp32.train_step(synthetic_batch(fp32))
    assert dtypes == [torch.float32] and fp32.grad_scaler is None


def test_cpu_default_is_fp32_and_recorded(nnunet_folders):
    trainer = _trainer("scratch", None)
    assert trainer.precision == "fp32"
    assert spec_in_plans(trainer.plans_manager.plans, "2d").precision == "fp32"


def test_precision_names_and_defaults():
    cpu = torch.device("cpu")
    assert default_precision(cpu) == "fp32"
    assert [resolve_precision(name, cpu) for name in (None, "auto", "bf16", "fp16", "fp32")] == [
        "fp32", "fp32", "bf16", "fp16", "fp32"
    ]
    assert DTYPES["bf16"] is torch.bfloat16
    with pytest.raises(ValueError, match="bf32"):
        resolve_precision("bf32", cpu)


@pytest.mark.skipif(torch.cuda.is_available() or torch.backends.mps.is_available(), reason="a machine with a GPU")
def test_auto_device_is_the_cpu_here_and_the_default_of_predict_and_features():
    from meddinov3.nnunet.commands import predict
    from meddinov3.viz.commands import features

    assert pick_device("auto") == torch.device("cpu") == pick_device("cpu")
    for command in (predict, features):
        assert inspect.signature(command).parameters["device"].default.default == "auto"
    assert pick_device(torch.device("cpu")) == torch.device("cpu")  # taken as it is (run_probe's device)
    for gpu in ("cuda", "cuda:1"):
        with pytest.raises(ValueError, match="no CUDA device"):
            pick_device(gpu)
    with pytest.raises(ValueError, match="one of auto, cuda, mps, cpu"):
        pick_device("gpu")


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_compiled_training_steps_with_bfloat16_rope(nnunet_folders, precision):
    """torch.compile as nnU-Net applies it on CUDA (the CPU backend here): AOTAutograd traces the
    backward pass inside autocast, where fp16 rejected the bfloat16 RoPE gradients of chunk/cat."""
    trainer = _trainer("meddinov3", precision)
    trainer.network = torch.compile(trainer.network)
    batch = synthetic_batch(trainer)
    losses = [float(trainer.train_step(batch)["loss"]) for _ in range(2)]
    assert all(math.isfinite(loss) for loss in losses)
