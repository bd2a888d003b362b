"""The learning monitors measure what they claim: uniform heads read 1.0 x ln K, rank counts directions."""

import math

import pytest
import torch

from meddinov3.pretrain.monitors import UniformWatch, effective_rank, entropy, learning_monitors

K = 64


def _teacher(logits, cls=None, patches=None):
    batch = logits.shape[0]
    return {
        "cls_logits": logits,
        "cls": torch.randn(batch, 16) if cls is None else cls,
        "patches": torch.randn(batch, 9, 16) if patches is None else patches,
    }


def _parts(value):
    return {"dino_global": torch.tensor(value), "dino_local": torch.tensor(value), "ibot": torch.tensor(value / 2)}


def test_uniform_heads_read_one_and_equal_entropies():
    masks = torch.zeros(8, 9, dtype=torch.bool)
    masks[:4, :3] = True  # half of the images carry masks, as in the recipe
    uniform = torch.full((8, K), 1 / K)
    out = learning_monitors(_parts(math.log(K)), _teacher(torch.zeros(8, K)), uniform, masks, K, teacher_temp=0.07)
    assert out["dino_global_frac"] == pytest.approx(1.0) and out["dino_local_frac"] == pytest.approx(1.0)
    # iBOT's uniform value is ln K on the masked images only: ln K / 2 here reads as 1.0.
    assert out["ibot_frac"] == pytest.approx(1.0)
    assert out["teacher_entropy"] == pytest.approx(math.log(K), rel=1e-6)
    assert out["teacher_mean_entropy"] == pytest.approx(math.log(K), rel=1e-6)
    assert out["target_entropy"] == pytest.approx(math.log(K), rel=1e-6)


def test_a_teacher_that_tells_images_apart_has_low_per_sample_entropy():
    logits = torch.full((8, K), -10.0)
    logits[torch.arange(8), torch.arange(8) * 3] = 10.0  # one confident, different prototype per image
    out = learning_monitors(_parts(1.0), _teacher(logits), torch.softmax(logits, -1), torch.ones(8, 9, dtype=torch.bool), K, 0.07)
    assert out["teacher_entropy"] < 0.01
    assert out["teacher_mean_entropy"] == pytest.approx(math.log(8), rel=1e-3)
    assert out["prototypes_used"] == 8


def test_collapse_onto_one_prototype_has_equal_entropies():
    logits = torch.zeros(8, K)
    logits[:, 5] = 10.0
    out = learning_monitors(_parts(1.0), _teacher(logits), torch.softmax(logits, -1), torch.ones(8, 9, dtype=torch.bool), K, 0.07)
    assert out["teacher_entropy"] == pytest.approx(out["teacher_mean_entropy"], abs=1e-6)
    assert out["prototypes_used"] == 1


def test_feature_spread_and_effective_rank():
    same_cls = torch.ones(8, 16)
    out = learning_monitors(_parts(1.0), _teacher(torch.randn(8, K), cls=same_cls), torch.full((8, K), 1 / K), torch.ones(8, 9, dtype=torch.bool), K, 0.07)
    assert out["cls_std"] == 0.0
    assert effective_rank(torch.randn(4000, 8)) == pytest.approx(8, rel=0.05)
    line = torch.randn(500, 1) * torch.randn(1, 8)
    assert effective_rank(line) == pytest.approx(1.0, abs=1e-3)
    assert entropy(torch.full((4,), 0.25)).item() == pytest.approx(math.log(4))


def test_uniform_watch_warns_once_after_the_warmup():
    watch = UniformWatch(warmup_iterations=10, prototypes=128)  # ln 128 = 4.852
    uniform = {"dino_global_frac": 0.995, "teacher_entropy": 4.85, "teacher_mean_entropy": 4.85}
    assert watch.check(5, uniform) is None  # still warming up
    assert watch.check(10, {"dino_global_frac": 0.7, "teacher_entropy": 2.0}) is None  # learning
    # A confident teacher the student has not caught up with yet: loss above ln K, not uniform.
    assert watch.check(10, {"dino_global_frac": 1.16, "teacher_entropy": 1.36, "teacher_mean_entropy": 4.2}) is None
    message = watch.check(20, uniform)
    assert message.startswith("not learning: the heads predict uniformly") and "0.995" in message
    assert watch.check(30, uniform) is None  # once
