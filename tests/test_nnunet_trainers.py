"""The nnU-Net trainers: the paper's optimiser and schedule, strict pretrained loading, the
network spec carried in the plans, and nnU-Net's plugin discovery."""

import pytest
import torch

from conftest import BF16_ROPE_TOL, FIXTURES, load_fixture, relative_error
from unit_trainers import initialized_trainer, plans_with, unit_plans
from meddinov3.backbone import build_backbone, load_backbone
from meddinov3.nnunet.methods import METHODS
from meddinov3.nnunet.network import PretrainedWeightsError
from meddinov3.nnunet.optim import PolyLRPerGroup
from meddinov3.nnunet.spec import (
    WEIGHTS_ENV,
    NetworkSpecError,
    attach_spec,
    build_spec,
    recorded_spec,
    spec_in_plans,
)
from meddinov3.nnunet.trainer_classes import TRAINERS, trainer_class
from meddinov3.nnunet.trainers import (
    DINOv3SingleScaleTrainer,
    DINOv3Trainer,
    MedDINOv3Trainer,
    ViTScratchTrainer,
)

TINY = {"embed_dim": 48, "num_heads": 2, "depth": 4}
TEACHER = FIXTURES / "meddinov3_tiny_teacher.pth"


@pytest.mark.parametrize(
    "cls, weights, encoder_lr",
    [
        (MedDINOv3Trainer, TEACHER, 3e-5),
        (DINOv3Trainer, TEACHER, 1e-4),
        (DINOv3SingleScaleTrainer, TEACHER, 1e-4),
        (ViTScratchTrainer, None, 3e-4),
    ],
)
def test_optimizer_is_adamw_with_encoder_and_decoder_groups(nnunet_env, cls, weights, encoder_lr):
    overrides = {} if weights else TINY
    trainer = initialized_trainer(cls, plans_with(cls.method_name, weights, **overrides))
    opt = trainer.optimizer
    assert isinstance(opt, torch.optim.AdamW)
    decoder, encoder = opt.param_groups
    assert (decoder["name"], encoder["name"]) == ("decoder", "encoder")
    assert decoder["initial_lr"] == pytest.approx(3e-4)
    assert encoder["initial_lr"] == pytest.approx(encoder_lr)
    for group in (decoder, encoder):
        assert group["betas"] == (0.9, 0.98)
        assert group["weight_decay"] == pytest.approx(5e-2)
    network = trainer.network
    trainable = {id(p) for p in network.parameters() if p.requires_grad}
    encoder_ids = {id(p) for p in encoder["params"]}
    assert encoder_ids == {id(p) for p in network.dino_encoder.parameters() if p.requires_grad}
    assert encoder_ids | {id(p) for p in decoder["params"]} == trainable
    assert not encoder_ids & {id(p) for p in decoder["params"]}


def test_recipe_settings(nnunet_env):
    trainer = initialized_trainer(ViTScratchTrainer, plans_with("scratch", **TINY))
    assert trainer.enable_deep_supervision is False
    assert trainer.oversample_foreground_percent == pytest.approx(0.33)
    assert trainer.network.dino_encoder.config.drop_path_rate == pytest.approx(0.2)
    assert trainer.network.interaction_layers == [3]  # single-scale: last block only
    multi = initialized_trainer(DINOv3Trainer, plans_with("dinov3", TEACHER))
    assert multi.network.interaction_layers == [2, 5, 8, 11]


def test_linear_decay_per_group_over_the_epochs(nnunet_env):
    trainer = initialized_trainer(MedDINOv3Trainer, plans_with("meddinov3", TEACHER))
    trainer.num_epochs = 10
    trainer.optimizer, trainer.lr_scheduler = trainer.configure_optimizers()
    for epoch in (0, 3, 9):
        trainer.lr_scheduler.step(epoch)
        factor = 1 - epoch / 10
        decoder, encoder = (g["lr"] for g in trainer.optimizer.param_groups)
        assert decoder == pytest.approx(3e-4 * factor)
        assert encoder == pytest.approx(3e-5 * factor)


def test_poly_schedule_exponent_and_end():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([{"params": [param], "lr": 1.0}])
    schedule = PolyLRPerGroup(opt, max_epochs=4, exponent=2.0)
    schedule.step(2)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.25)
    schedule.step(4)
    assert schedule.get_last_lr() == [0.0]
    with pytest.raises(ValueError, match="epoch"):
        schedule.step()


def test_every_trainable_parameter_gets_a_gradient(nnunet_env):
    """DistributedDataParallel needs this: a parameter without a gradient stalls its reduction."""
    for method, weights, overrides in (("scratch", None, TINY), ("dinov3", TEACHER, {})):
        trainer = initialized_trainer(TRAINERS[METHODS[method].trainer], plans_with(method, weights, **overrides))
        out = trainer.network(torch.randn(2, 1, 64, 64))
        out.square().mean().backward()
        missing = [n for n, p in trainer.network.named_parameters() if p.requires_grad and p.grad is None]
        assert missing == []


def test_pretrained_encoder_is_loaded_exactly(nnunet_env):
    trainer = initialized_trainer(MedDINOv3Trainer, plans_with("meddinov3", TEACHER))
    reference = load_backbone(TEACHER).state_dict()
    loaded = trainer.network.dino_encoder.state_dict()
    assert set(loaded) == set(reference)
    assert all(torch.equal(loaded[k], reference[k]) for k in reference)
    # What tensors cannot tell comes from the MedDINOv3 recipe: bfloat16 RoPE, eps 1e-6.
    spec = trainer.network_spec.backbone_config()
    assert (spec.rope_dtype, spec.norm_eps, spec.qkv_bias) == ("bf16", 1e-6, False)


def test_missing_storage_tokens_is_an_error(nnunet_env, tmp_path):
    state = build_backbone("vitb16", **TINY).state_dict()
    del state["storage_tokens"]
    path = tmp_path / "no_storage.pth"
    torch.save(state, path)
    plans = unit_plans()
    # The architecture the user asked for has 4 storage tokens; the file has none.
    spec = build_spec(METHODS["dinov3"], weights=path, backbone="vitb16", backbone_overrides=TINY)
    attach_spec(plans, "2d", spec)
    with pytest.raises(PretrainedWeightsError, match="n_storage_tokens") as err:
        initialized_trainer(DINOv3Trainer, plans)
    assert str(path) in str(err.value)


def test_weights_of_another_width_are_an_error(nnunet_env, tmp_path):
    path = tmp_path / "wide.pth"
    torch.save(build_backbone("vitb16", embed_dim=64, num_heads=2, depth=4).state_dict(), path)
    plans = unit_plans()
    attach_spec(plans, "2d", build_spec(METHODS["dinov3"], weights=path, backbone="vitb16", backbone_overrides=TINY))
    with pytest.raises(PretrainedWeightsError, match="embed_dim"):
        initialized_trainer(DINOv3Trainer, plans)


def test_methods_with_pretraining_need_weights(nnunet_env):
    with pytest.raises(NetworkSpecError, match="--weights"):
        initialized_trainer(MedDINOv3Trainer, unit_plans())


def test_weights_from_environment_for_nnunetv2_train(nnunet_env, monkeypatch):
    """`nnUNetv2_train -tr MedDINOv3Trainer` gives plain plans; the trainer records its spec in them."""
    monkeypatch.setenv(WEIGHTS_ENV, str(TEACHER))
    trainer = initialized_trainer(MedDINOv3Trainer, unit_plans())
    stored = spec_in_plans(trainer.plans_manager.plans, "2d")
    assert stored is not None and stored.pretrained_weights == str(TEACHER.resolve())
    assert stored.method == "meddinov3"


def test_patch_size_must_be_a_multiple_of_16(nnunet_env):
    plans = unit_plans(patch=(72, 64))
    attach_spec(plans, "2d", build_spec(METHODS["scratch"], backbone_overrides=TINY))
    with pytest.raises(NetworkSpecError, match="multiples of 16"):
        initialized_trainer(ViTScratchTrainer, plans)


def test_spec_of_another_method_is_rejected(nnunet_env):
    with pytest.raises(NetworkSpecError, match="scratch"):
        initialized_trainer(MedDINOv3Trainer, plans_with("scratch", **TINY))


def test_rebuilding_a_network_needs_its_recorded_spec():
    """Prediction rebuilds the network from plans.json alone: a missing or foreign spec is an error."""
    configuration = plans_with("scratch", **TINY)["configurations"]["2d"]
    assert recorded_spec(configuration, (64, 64)).method == "scratch"
    with pytest.raises(NetworkSpecError, match="no dino-unet network spec.*--method dino-unet"):
        recorded_spec(configuration, (64, 64), "dino-unet")
    with pytest.raises(NetworkSpecError, match="no MedDINOv3 network spec"):
        recorded_spec(unit_plans()["configurations"]["2d"], (64, 64))
    with pytest.raises(NetworkSpecError, match="multiples of 16"):
        recorded_spec(configuration, (64, 72))


@torch.no_grad()
def test_network_from_plans_loads_a_reference_finetuned_model(nnunet_env):
    """A network saved by the reference trainer loads strictly into the one rebuilt from plans."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    case = load_fixture("meddinov3_tiny_teacher_expected.pt")["primus_multiscale"]
    plans = plans_with("meddinov3", TEACHER)
    manager = PlansManager(plans)
    network = MedDINOv3Trainer.build_network_architecture(
        manager, manager.get_configuration("2d"), 1, case["num_classes"], enable_deep_supervision=False
    )
    network.load_state_dict(case["state_dict"], strict=True)
    assert relative_error(network.eval()(case["x"]), case["logits"]) <= BF16_ROPE_TOL


def test_trainer_lookup_and_nnunet_plugin_discovery():
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    from meddinov3.nnunet.checkpoints import AtomicCheckpoints
    from meddinov3.nnunet.plugin import PLUGIN_DIR

    # nnU-Net's own trainer, under its own name (results folder, checkpoints), with atomic saves.
    stock = trainer_class("nnUNetTrainer")
    assert stock.__bases__ == (AtomicCheckpoints, nnUNetTrainer) and stock.__name__ == "nnUNetTrainer"
    for method in METHODS.values():
        cls = trainer_class(method.trainer)
        assert getattr(cls, "method_name", method.name) == method.name
    # The call nnU-Net makes for each folder in nnUNet_extTrainer.
    found = recursive_find_python_class(
        PLUGIN_DIR, "MedDINOv3Trainer", None, base_folder=PLUGIN_DIR, cleanup_imports_from_base_folder=True
    )
    assert found is MedDINOv3Trainer


def test_multi_gpu_arguments_are_checked_before_any_work():
    from meddinov3.nnunet.training import TrainingJob, run_training

    with pytest.raises(ValueError, match="needs --device cuda"):
        run_training(TrainingJob(dataset="987", num_gpus=2, device="cpu"))
    with pytest.raises(ValueError, match="exclude each other"):
        run_training(TrainingJob(dataset="987", continue_training=True, validation_only=True, device="cpu"))
