"""Each method's training recipe, read from a built nnU-Net trainer and checked against the facts
sheet (RECIPES.md: what the MedDINOv3 release's trainers compute): optimiser and parameter groups,
schedule, gradient clipping, initialisation statistics, frozen parts, and the `release` recipe's
backbone construction (dropped keys, eps, RoPE dtype) and re-randomised patch embedding."""

from __future__ import annotations

import math

import pytest
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from conftest import FIXTURES
from unit_trainers import initialized_trainer, plans_with, unit_plans
from meddinov3.backbone import load_backbone
from meddinov3.nnunet.checkpoints import AtomicCheckpoints
from meddinov3.nnunet.methods import METHODS
from meddinov3.nnunet.spec import build_spec
from meddinov3.nnunet.trainer_classes import trainer_class

TEACHER = FIXTURES / "meddinov3_tiny_teacher.pth"
OFFICIAL = FIXTURES / "dinov3_tiny_official.pth"
TINY = {"embed_dim": 48, "num_heads": 2, "depth": 4}
HE_GAIN = math.sqrt(2.0 / (1 + 1e-2**2))  # kaiming-normal with LeakyReLU slope 1e-2

# The facts sheet, per method: optimiser, base learning rate per parameter group, weight decay,
# AdamW betas or SGD momentum/Nesterov, poly exponent of the per-epoch schedule.
ADAMW = dict(optimizer=torch.optim.AdamW, betas=(0.9, 0.98), weight_decay=5e-2)  # T/dinov3Trainer.py:1450-1459
SGD = dict(optimizer=torch.optim.SGD, momentum=0.99, nesterov=True, weight_decay=3e-5)  # T/nnUNetTrainer.py:505-508
FACTS = {
    "meddinov3": dict(ADAMW, lrs={"decoder": 3e-4, "encoder": 3e-5}, poly=1.0),  # :1564-1567, 1462-1476
    "dinov3": dict(ADAMW, lrs={"decoder": 3e-4, "encoder": 1e-4}, poly=1.0),  # :1521-1524
    "dinov3-single": dict(ADAMW, lrs={"decoder": 3e-4, "encoder": 1e-4}, poly=1.0),  # :1410-1413
    "scratch": dict(ADAMW, lrs={"decoder": 3e-4, "encoder": 3e-4}, poly=1.0),  # :1485-1488
    "segformer": dict(ADAMW, lrs={"all": 2e-5}, poly=0.9),  # T/segformerTrainer.py:136-137, 475-476
    "dino-unet": dict(SGD, lrs={"all": 1e-3}, poly=0.9),  # T/dinoUNetTrainer.py:143-144
    "nnunet": dict(SGD, lrs={None: 1e-2}, weight_decay=3e-5, poly=0.9),  # nnU-Net's own
}


def build(method: str, recipe: str = "default", weights=None):
    cls = trainer_class(METHODS[method].trainer)
    if METHODS[method].backbone_preset is None:
        return initialized_trainer(cls, unit_plans())
    overrides = {} if weights is not None else TINY
    return initialized_trainer(cls, plans_with(method, weights, recipe, **overrides))


def default_weights(method: str, dino_unet_weights):
    return {"meddinov3": TEACHER, "dinov3": OFFICIAL, "dinov3-single": OFFICIAL, "dino-unet": dino_unet_weights}.get(method)


@pytest.mark.parametrize("method", list(FACTS))
def test_optimizer_groups_and_schedule_of_the_built_trainer(nnunet_env, method, dino_unet_weights):
    facts = FACTS[method]
    trainer = build(method, weights=default_weights(method, dino_unet_weights))
    optimizer = trainer.optimizer
    assert type(optimizer) is facts["optimizer"]
    groups = {group.get("name"): group for group in optimizer.param_groups}
    assert {name: group["initial_lr"] for name, group in groups.items()} == facts["lrs"]
    for group in groups.values():
        assert group["weight_decay"] == facts["weight_decay"]
        if "betas" in facts:
            assert group["betas"] == facts["betas"]
        else:
            assert (group["momentum"], group["nesterov"]) == (facts["momentum"], facts["nesterov"])
    # Every trainable parameter is optimised once; the frozen ones are not.
    network = trainer.network
    in_groups = [id(p) for group in optimizer.param_groups for p in group["params"]]
    assert sorted(in_groups) == sorted(id(p) for p in network.parameters() if p.requires_grad)
    if "encoder" in groups:
        encoder = {id(p) for p in network.dino_encoder.parameters() if p.requires_grad}
        assert {id(p) for p in groups["encoder"]["params"]} == encoder

    epochs = trainer.num_epochs
    for epoch in (0, 400, epochs - 1):
        trainer.lr_scheduler.step(epoch)
        for name, group in groups.items():
            assert group["lr"] == pytest.approx(facts["lrs"][name] * (1 - epoch / epochs) ** facts["poly"], rel=1e-12)


@pytest.mark.parametrize("method", ["scratch", "dino-unet"])
def test_gradient_clipping_of_the_built_trainer(nnunet_env, method, dino_unet_weights, monkeypatch):
    """nnU-Net's train_step, which no trainer of ours overrides, clips the global gradient norm at 12,
    as every release trainer does."""
    trainer = build(method, weights=default_weights(method, dino_unet_weights))
    clipped = []
    real_clip = torch.nn.utils.clip_grad_norm_

    def recording_clip(parameters, max_norm, *args, **kwargs):
        clipped.append(max_norm)
        return real_clip(parameters, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording_clip)
    batch = {"data": torch.randn(2, 1, 64, 64), "target": torch.randint(0, 3, (2, 1, 64, 64)).float()}
    trainer.network.train()
    trainer.train_step(batch)
    assert clipped == [12]
    assert trainer.enable_deep_supervision is False
    assert trainer.oversample_foreground_percent == pytest.approx(0.33)


def he_std(weight: torch.Tensor) -> float:
    """kaiming_normal_(a=1e-2) std; PyTorch's fan_in is dim 1 x kernel area, for ConvTranspose2d too."""
    return HE_GAIN / math.sqrt(weight.shape[1] * weight[0, 0].numel())


def assert_he_initialised(modules, min_weights: int = 1000) -> int:
    """Every Conv2d/ConvTranspose2d: zero bias; std within 10% of He's where there are enough weights."""
    checked = 0
    for module in modules:
        if not isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            continue
        if module.bias is not None:
            assert torch.count_nonzero(module.bias) == 0
        if module.weight.numel() >= min_weights:
            assert module.weight.std().item() == pytest.approx(he_std(module.weight), rel=0.1)
            checked += 1
    return checked


@pytest.mark.parametrize("method", ["meddinov3", "dinov3", "dinov3-single", "scratch"])
def test_primus_decoder_initialisation_of_the_built_trainer(nnunet_env, method):
    trainer = build(method, weights=default_weights(method, None))
    decoder = trainer.network.up_projection
    assert assert_he_initialised(decoder.modules()) >= 2
    # PyTorch's default would be 1/sqrt(3 fan_in): 2.45x smaller than He's.
    first = decoder.decode[0][0].weight
    assert first.std().item() / (1 / math.sqrt(3 * first.shape[1] * 4)) == pytest.approx(2.449, rel=0.1)


@pytest.mark.parametrize("method", ["meddinov3", "dinov3", "dinov3-single", "scratch", "dino-unet"])
def test_vit_backbone_fine_tunes_without_rope_augmentation(nnunet_env, method, dino_unet_weights):
    trainer = build(method, weights=default_weights(method, dino_unet_weights))
    encoder = trainer.network.dino_encoder
    config = encoder.config
    assert (config.rope_shift_coords, config.rope_jitter_coords, config.rope_rescale_coords) == (None, None, None)
    assert config.drop_path_rate == (0.0 if method == "dino-unet" else 0.2)  # official hub / :1433-1587
    encoder.train()
    first, again = encoder.rope_embed(4, 6), encoder.rope_embed(4, 6)
    encoder.eval()
    for table in zip(first, again, encoder.rope_embed(4, 6)):
        torch.testing.assert_close(table[0], table[1], rtol=0, atol=0)
        torch.testing.assert_close(table[0], table[2], rtol=0, atol=0)


@pytest.mark.parametrize(
    "method, frozen",
    [("meddinov3", {"dino_encoder.mask_token"}), ("scratch", {"dino_encoder.mask_token"}), ("segformer", set()),
     ("nnunet", set()), ("dino-unet", "every dino_encoder tensor")],
)
def test_frozen_parts_of_the_built_trainer(nnunet_env, method, frozen, dino_unet_weights):
    network = build(method, weights=default_weights(method, dino_unet_weights)).network
    found = {name for name, p in network.named_parameters() if not p.requires_grad}
    if method == "dino-unet":
        frozen = {f"dino_encoder.{name}" for name, _ in network.dino_encoder.named_parameters()}
    assert found == frozen


def test_segformer_initialisation_of_the_built_trainer(nnunet_env):
    network = build("segformer").network
    checked = 0
    for module in network.modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            if module.bias is not None:
                assert torch.count_nonzero(module.bias) == 0
            weight = module.weight
            fan_in, fan_out = weight.shape[1] * weight[0, 0].numel(), weight.shape[0] * weight[0, 0].numel()
            if weight.numel() >= 1000:
                assert weight.std().item() == pytest.approx(math.sqrt(2 / (fan_in + fan_out)), rel=0.1)
                checked += 1
        elif isinstance(module, torch.nn.LayerNorm):
            assert torch.all(module.weight == 1) and torch.count_nonzero(module.bias) == 0
    assert checked > 100
    upsample = network.head.upsample  # ConvTranspose2d keeps PyTorch's default: uniform, biases too
    bound = 1 / math.sqrt(upsample.weight.shape[1] * 16)
    assert torch.count_nonzero(upsample.bias) == 3 and upsample.weight.abs().max() <= bound


def test_nnunet_keeps_its_own_recipe(nnunet_env):
    trainer = build("nnunet")
    # nnU-Net's own trainer, only with atomic checkpoint files (and under nnU-Net's class name).
    assert type(trainer).__mro__[1:] == (AtomicCheckpoints, nnUNetTrainer, *nnUNetTrainer.__mro__[1:])
    assert type(trainer).__name__ == "nnUNetTrainer" and trainer.enable_deep_supervision
    assert assert_he_initialised(trainer.network.modules()) > 10


def test_dino_unet_initialisation_of_the_built_trainer(nnunet_env, dino_unet_weights):
    trainer = build("dino-unet", weights=dino_unet_weights)
    network = trainer.network
    outside = [m for name, child in network.named_children() if name != "dino_encoder" for m in child.modules()]
    assert assert_he_initialised(outside) > 20
    for extractor in network.adapter.extractors:
        assert extractor.ffn.fc1.weight.std().item() == pytest.approx(0.02, rel=0.1)
        assert torch.count_nonzero(extractor.attn.sampling_offsets.weight) == 0
        assert torch.count_nonzero(extractor.attn.attention_weights.weight) == 0
        assert torch.count_nonzero(extractor.attn.sampling_offsets.bias) > 0
    # The frozen encoder is the pretrained one, patch embedding included.
    pretrained = load_backbone(dino_unet_weights).state_dict()
    for key, value in network.dino_encoder.state_dict().items():
        torch.testing.assert_close(value, pretrained[key], rtol=0, atol=0)


def test_release_recipe_reproduces_the_release_dinov3_backbone(nnunet_env):
    """On the official-layout fixture: the ViT-default network, loaded non-strictly."""
    trainer = build("dinov3", recipe="release", weights=OFFICIAL)
    encoder = trainer.network.dino_encoder
    official = torch.load(OFFICIAL, map_location="cpu", weights_only=True)

    assert trainer.network_spec.recipe == "release"
    dropped = {"storage_tokens"} | {f"blocks.{i}.attn.qkv.bias_mask" for i in range(12)}
    log = open(trainer.log_file, encoding="utf-8").read()
    assert f"dropped {len(dropped)} tensors" in log
    assert set(log.split("network lacks: ")[1].splitlines()[0].strip().split(", ")) == dropped
    assert set(encoder.state_dict()) == set(official) - dropped

    assert encoder.n_storage_tokens == 0 and not hasattr(encoder, "storage_tokens")
    norms = [m for m in encoder.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(norms) == 2 * 12 + 1 and {m.eps for m in norms} == {1e-6}
    periods = encoder.rope_embed.periods
    assert periods.dtype == torch.bfloat16 and torch.equal(periods, official["rope_embed.periods"].bfloat16())
    assert all(s.dtype == torch.bfloat16 for s in encoder.rope_embed(4, 6))
    # The key bias loads unmasked: the release's plain Linear adds all of it.
    qkv = encoder.blocks[0].attn.qkv
    assert type(qkv) is torch.nn.Linear and torch.equal(qkv.bias, official["blocks.0.attn.qkv.bias"])
    assert torch.count_nonzero(qkv.bias[48:96]) > 0
    for key in set(official) - dropped - {"rope_embed.periods"}:
        torch.testing.assert_close(encoder.state_dict()[key], official[key], rtol=0, atol=0)
    assert trainer.network(torch.randn(1, 1, 64, 64)).shape == (1, 3, 64, 64)


def test_default_recipe_keeps_the_official_architecture_on_the_same_file(nnunet_env):
    encoder = build("dinov3", weights=OFFICIAL).network.dino_encoder
    official = torch.load(OFFICIAL, map_location="cpu", weights_only=True)
    assert set(encoder.state_dict()) == set(official)
    assert encoder.n_storage_tokens == 4 and encoder.rope_embed.periods.dtype == torch.float32
    assert {m.eps for m in encoder.modules() if isinstance(m, torch.nn.LayerNorm)} == {1e-5}


def test_release_recipe_of_scratch_builds_the_vit_defaults(nnunet_env):
    encoder = build("scratch", recipe="release").network.dino_encoder
    config = encoder.config
    assert (config.n_storage_tokens, config.norm_eps, config.rope_dtype, config.mask_k_bias) == (0, 1e-6, "bf16", False)
    assert config.drop_path_rate == 0.2 and config.rope_rescale_coords is None


def test_release_recipe_rerandomises_dino_unets_frozen_patch_embedding(nnunet_env, dino_unet_weights):
    trainer = build("dino-unet", recipe="release", weights=dino_unet_weights)
    encoder = trainer.network.dino_encoder
    pretrained = load_backbone(dino_unet_weights).state_dict()
    proj = encoder.patch_embed.proj
    assert not torch.equal(proj.weight, pretrained["patch_embed.proj.weight"])
    assert torch.count_nonzero(proj.bias) == 0
    assert proj.weight.std().item() == pytest.approx(HE_GAIN / math.sqrt(3 * 16 * 16), rel=0.05)
    assert not proj.weight.requires_grad  # still frozen: the ViT runs on a random projection
    for key, value in encoder.state_dict().items():
        if not key.startswith("patch_embed."):
            torch.testing.assert_close(value, pretrained[key], rtol=0, atol=0)
    # The frozen ViT in train mode keeps the official checkpoint's RoPE rescale, as in the release.
    assert encoder.config.rope_rescale_coords == 2.0
    assert "patch embedding re-initialised" in open(trainer.log_file, encoding="utf-8").read()


def test_release_spec_rebuilds_the_same_network_for_prediction(nnunet_env):
    """What prediction does: the network from the saved plans takes the trained weights strictly."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    trainer = build("dinov3", recipe="release", weights=OFFICIAL)
    manager = PlansManager(trainer.plans_manager.plans)
    rebuilt = type(trainer).build_network_architecture(manager, manager.get_configuration("2d"), 1, 3, False)
    rebuilt.load_state_dict(trainer.network.state_dict(), strict=True)
    assert rebuilt.dino_encoder.config.n_storage_tokens == 0


def test_unknown_recipe_is_an_error():
    with pytest.raises(ValueError, match="unknown recipe 'paper'.*default, release"):
        build_spec(METHODS["scratch"], recipe="paper")
