"""`meddinov3 probe`: a linear head on frozen patch features, scored per label on held-out cases.

The reference point is a backbone whose patch features encode the label, honestly: it sees only
the image, and the test dataset's images give each label its own HU band (synthetic organ shapes
from `meddinov3 synth`, recoloured). Its features are the fraction of each patch's pixels in each
band, so a working probe must score near 1 with it, and a random ViT well below. The same
features from a real ViT loaded from a file (`label_bands.band_counting_vit`) check the CLI.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from meddinov3.backbone import build_backbone
from meddinov3.backbone.export import save_backbone
from meddinov3.cli import app
from meddinov3.intensity import CT3M_MEAN, CT3M_STD
from meddinov3.probe import ProbeConfig, prepare_probe, random_twin, run_probe
from meddinov3.probe.classifier import upsample
from meddinov3.probe.features import extract, feature_blocks
from meddinov3.probe.report import RESULTS_JSON
from meddinov3.probe.slices import IGNORE_INDEX, ClassSet, choose_training_slices
from meddinov3.datasets import DatasetLabels
from meddinov3.synth.dataset import SynthSpec, write_dataset
from label_bands import EDGES_HU, N_CLASSES, band_counting_vit, write_band_coded_dataset

SHAPE = (10, 64, 64)
FAST = ProbeConfig(size=64, steps=300, lr=0.1, max_train_slices=32)


class LabelBands(nn.Module):
    """Patch tokens = fraction of the patch's pixels in each label's HU band, from the image alone."""

    n_blocks = 1

    def __init__(self, patch_size: int = 2):
        super().__init__()
        self.patch_size = patch_size
        self.register_buffer("edges", torch.tensor(EDGES_HU))
        self.calls = 0

    def get_intermediate_layers(self, x, n=1, reshape=True, norm=True):
        self.calls += 1
        hu = x[:, 0] * CT3M_STD + CT3M_MEAN
        bands = F.one_hot(torch.bucketize(hu, self.edges), N_CLASSES).permute(0, 3, 1, 2).float()
        fractions = F.avg_pool2d(bands, self.patch_size)
        return tuple(fractions for _ in n)


def tiny_vit(patch_size: int = 8):
    return build_backbone("vits16", embed_dim=64, depth=4, num_heads=2, patch_size=patch_size)


def synth_dataset(folder: Path, test_cases: int) -> Path:
    write_dataset(folder, SynthSpec(cases=3, test_cases=test_cases, seed=0, shape_zyx=SHAPE))
    return folder


@pytest.fixture(scope="module")
def coded(tmp_path_factory) -> Path:
    """Synthetic CT whose images encode the labels as HU bands (3 training, 2 held-out cases)."""
    return write_band_coded_dataset(tmp_path_factory.mktemp("probe") / "Dataset971_Coded", SHAPE, cases=3, test_cases=2)


def test_label_encoding_features_score_near_one_and_random_features_well_below(coded):
    torch.manual_seed(0)
    bands, vit = LabelBands(), tiny_vit(patch_size=4).train()
    rng_before = torch.get_rng_state()
    result = run_probe(coded, {"bands": bands, "random": vit}, FAST, device="cpu")
    encoded, random = result.scores["bands"], result.scores["random"]
    assert encoded.mean_dice >= 0.9, encoded.dice
    assert min(encoded.dice.values()) >= 0.75, encoded.dice
    assert random.mean_dice <= encoded.mean_dice - 0.2, (random.dice, encoded.dice)
    assert set(encoded.dice) == set(range(1, N_CLASSES)) and len(encoded.per_case) == 2
    # Frozen means frozen: the caller's mode and RNG are left alone, nothing is cached on disk.
    assert vit.training and torch.equal(torch.get_rng_state(), rng_before)
    assert encoded.computed_slices == result.train_slices + 2 * SHAPE[0] and encoded.reused_slices == 0


def test_rerun_takes_every_feature_from_the_cache(coded, tmp_path):
    data = prepare_probe(coded, ProbeConfig(size=64, steps=20, max_train_slices=16))
    first, second = LabelBands(), LabelBands()
    a = run_probe(data, {"bands": first}, device="cpu", cache_dir=tmp_path)
    b = run_probe(data, {"bands": second}, device="cpu", cache_dir=tmp_path)
    assert first.calls > 0 and second.calls == 0
    assert b.scores["bands"].computed_slices == 0 and b.scores["bands"].reused_slices == 16 + 2 * SHAPE[0]
    assert a.scores["bands"].per_case == b.scores["bands"].per_case
    # Other weights never hit that cache.
    changed = LabelBands()
    changed.edges += 1.0
    run_probe(data, {"bands": changed}, device="cpu", cache_dir=tmp_path)
    assert changed.calls > 0


def run_cli(*args: str):
    return CliRunner().invoke(app, ["probe", *args])


def test_cli_writes_table_json_chart_reuses_cache_and_is_deterministic(coded, tmp_path):
    weights = save_backbone(tiny_vit(), tmp_path / "tiny")
    args = [str(coded), "-w", str(weights), "--size", "64", "--steps", "40", "--max-train-slices", "16",
            "--device", "cpu", "--no-progress"]
    first = run_cli(*args, "-o", str(tmp_path / "a"))
    assert first.exit_code == 0, first.output
    assert "tiny - random" in first.stdout and "liver" in first.stdout and "mean" in first.stdout
    rerun = run_cli(*args, "-o", str(tmp_path / "a"))
    uncached = run_cli(*args, "-o", str(tmp_path / "b"), "--no-cache")
    assert rerun.exit_code == 0 and uncached.exit_code == 0, rerun.output + uncached.output
    results = {name: json.loads((tmp_path / name / RESULTS_JSON).read_text(encoding="utf-8")) for name in ("a", "b")}
    for name in ("tiny", "random"):
        cached = results["a"]["backbones"][name]
        assert cached["feature_cache"] == {"computed_slices": 0, "reused_slices": 16 + 2 * SHAPE[0]}
        assert cached["per_case"] == results["b"]["backbones"][name]["per_case"]
    assert results["a"]["difference"]["tiny"]["baseline"] == "random"
    assert results["a"]["backbones"]["random"]["source"]["twin_of"] == "tiny"
    assert (tmp_path / "a" / "probe_dsc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "b" / "feature_cache").exists()


def test_cli_scores_the_features_of_the_weights_it_is_given(coded, tmp_path):
    """A ViT file whose features encode the labels scores near 1 through the CLI, its random twin
    well below: the table reports each backbone's own features, not its twin's."""
    weights = save_backbone(band_counting_vit(), tmp_path / "bands")
    result = run_cli(str(coded), "-w", str(weights), "--size", "64", "--steps", "300", "--lr", "0.1",
                     "--max-train-slices", "32", "--device", "cpu", "--no-progress", "--no-cache", "-o", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    scores = json.loads((tmp_path / "out" / RESULTS_JSON).read_text(encoding="utf-8"))["backbones"]
    encoded, random = scores["bands"]["mean_dice"], scores["random"]["mean_dice"]
    assert encoded >= 0.9 and random <= encoded - 0.2, (encoded, random)


@pytest.mark.parametrize("test_cases, missing", [(0, "imagesTs/ and labelsTs/ missing"), (1, "labelsTs/ missing")])
def test_cli_rejects_a_dataset_without_held_out_labels(tmp_path, test_cases, missing):
    folder = synth_dataset(tmp_path / "Dataset972_NoTest", test_cases=test_cases)
    if test_cases:
        shutil.rmtree(folder / "labelsTs")
    result = run_cli(str(folder), "-w", "unused.pth", "-o", str(tmp_path / "out"), "--no-progress")
    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert message.startswith(f"error: {folder}: no held-out labelled cases ({missing})"), message
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def test_cli_rejects_a_size_the_patch_does_not_divide(coded, tmp_path):
    weights = save_backbone(tiny_vit(), tmp_path / "tiny")
    result = run_cli(str(coded), "-w", str(weights), "--size", "60", "-o", str(tmp_path / "out"), "--no-progress")
    assert result.exit_code == 1
    assert "error: --size 60 is not a multiple of the backbone's patch size 8" in " ".join(result.stderr.split())


def test_training_slices_favour_foreground_keep_background_and_follow_the_seed():
    foreground = {"a": np.arange(40) % 4 == 0, "b": np.zeros(40, dtype=bool)}  # 10 slices with organs, 70 without
    chosen = choose_training_slices(foreground, max_slices=20, foreground_share=0.75, seed=3)
    picked = [(case, int(z)) for case, zs in chosen.items() for z in zs]
    with_organs = sum(foreground[case][z] for case, z in picked)
    assert len(picked) == 20 and with_organs == 10  # only 10 exist; background fills the rest
    assert chosen.keys() == choose_training_slices(foreground, 20, 0.75, seed=3).keys()
    assert all(np.array_equal(chosen[c], choose_training_slices(foreground, 20, 0.75, 3)[c]) for c in chosen)
    other = choose_training_slices(foreground, 20, 0.75, seed=4)
    assert any(not np.array_equal(chosen[c], other.get(c, np.array([]))) for c in chosen)
    many = {"a": np.ones(100, dtype=bool), "b": np.zeros(100, dtype=bool)}
    counts = {c: len(z) for c, z in choose_training_slices(many, 40, 0.75, seed=0).items()}
    assert counts == {"a": 30, "b": 10}


def test_ignore_label_is_skipped_and_unknown_values_are_refused(tmp_path):
    classes = ClassSet.of(DatasetLabels({0: "background", 1: "liver", 2: "ignore"}))
    assert classes.num_classes == 2
    np.testing.assert_array_equal(classes.targets(np.array([0, 1, 2]), tmp_path), [0, 1, IGNORE_INDEX])
    with pytest.raises(ValueError, match="label value 3 is not in dataset.json"):
        classes.targets(np.array([0, 3]), tmp_path)


def test_upsampling_is_bilinear_interpolation():
    logits = torch.randn(2, 3, 5, 7)
    expected = F.interpolate(logits, size=(37, 41), mode="bilinear", align_corners=False)
    torch.testing.assert_close(upsample(logits, (37, 41)), expected, rtol=1e-5, atol=1e-5)


def test_multiscale_features_are_the_four_quarter_blocks_concatenated():
    vit = tiny_vit().eval()
    hu = np.random.default_rng(0).normal(0, 300, (3, 40, 48)).astype(np.float32)
    assert feature_blocks(vit, "last") == [3] and feature_blocks(vit, "multiscale") == [0, 1, 2, 3]
    last = extract(vit, hu, 32, [3], torch.device("cpu"), batch_size=2)
    multi = extract(vit, hu, 32, [0, 1, 2, 3], torch.device("cpu"), batch_size=2)
    assert last.shape == (3, 64, 4, 4) and multi.shape == (3, 256, 4, 4) and multi.dtype == np.float16
    np.testing.assert_array_equal(multi[:, 192:], last)


def test_random_twin_has_the_architecture_and_depends_only_on_the_seed():
    vit = tiny_vit()
    twin, again, other = random_twin(vit, 0), random_twin(vit, 0), random_twin(vit, 1)
    assert twin.config == vit.config and not twin.training
    state, same, different = twin.state_dict(), again.state_dict(), other.state_dict()
    assert all(torch.equal(state[k], same[k]) for k in state)
    assert not torch.equal(state["blocks.0.attn.qkv.weight"], different["blocks.0.attn.qkv.weight"])


def test_images_are_read_whole_through_the_one_reading_path(tmp_path):
    """A cut-off .nii.gz is refused naming the file (SimpleITK alone zero-fills the missing voxels)."""
    from meddinov3.probe.splits import ProbeDatasetError
    from meddinov3.probe.slices import read_hu_volume
    from meddinov3.synth.dataset import SynthSpec, write_dataset

    dataset = tmp_path / "Dataset993_Truncated"
    write_dataset(dataset, SynthSpec(cases=1, test_cases=1, seed=0, shape_zyx=(4, 64, 64)))
    image = next((dataset / "imagesTs").glob("*.nii.gz"))
    assert read_hu_volume(image).shape == (4, 64, 64)
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    with pytest.raises(ProbeDatasetError, match=f"{image.name}: truncated"):
        read_hu_volume(image)
