"""CT multi-crop, iBOT masking, collation, sharded sampling and the pretraining config."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from meddinov3.pretrain.augment import CropSizes, CTMultiCrop, sample_crop_box
from meddinov3.pretrain.collate import collate_multicrop
from meddinov3.pretrain.config import CropConfig, IntensityConfig, load_config
from meddinov3.pretrain.data import (
    BundledSlice,
    PretrainDataset,
    ShardedBatchSampler,
    build_corpus,
    crop_sizes_at,
    seeded_generator,
)
from meddinov3.pretrain.masking import block_mask, mask_ratio_for_slot
from meddinov3.intensity import CT3M_MEAN as CT_MEAN, CT3M_STD as CT_STD, normalize_ct
from meddinov3.pretrain.procedural_slices import synthetic_ct_slice

SLICE = Path(__file__).parents[1] / "src" / "meddinov3" / "assets" / "ct_slice_1866889.npy"


def tiny_config(*overrides: str):
    return load_config("tiny", ["optim.global_batch_size=8", *overrides])


def test_normalisation_is_the_spec_formula_on_the_real_slice():
    hu = np.load(SLICE)
    x = normalize_ct(hu)
    assert x.shape == (3, 256, 256) and x.dtype == torch.float32
    expected = (np.clip(hu, -1000, 1000) - 65.1084213256836) / 178.01663208007812
    assert np.allclose(x[0].numpy(), expected, atol=1e-6)
    assert torch.equal(x[0], x[2])
    assert CT_MEAN == 65.1084213256836 and CT_STD == 178.01663208007812


def test_normalisation_of_a_batch_keeps_leading_axes():
    assert normalize_ct(np.zeros((2, 8, 8))).shape == (2, 3, 8, 8)


def test_synthetic_slices_are_ct_like_and_deterministic():
    a, b = synthetic_ct_slice(3), synthetic_ct_slice(3)
    assert a.dtype == np.int16 and a.shape == (256, 256)
    assert np.array_equal(a, b) and not np.array_equal(a, synthetic_ct_slice(4))
    assert a.min() <= -950 and a.max() >= 400  # air outside the body, bone in the spine
    assert -200 < np.median(a[96:160, 96:160]) < 200 or np.median(a[96:160, 96:160]) < -700  # soft tissue or lung


def test_crop_boxes_respect_the_scale_range():
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        top, left, h, w = sample_crop_box(256, 256, (0.05, 0.32), g)
        assert 0 <= top and top + h <= 256 and 0 <= left and left + w <= 256
        assert 0.04 <= h * w / 256**2 <= 0.33


def test_multicrop_shapes_and_determinism():
    multicrop = CTMultiCrop(CropConfig(n_local=8), IntensityConfig())
    hu = torch.from_numpy(np.load(SLICE))
    sizes = CropSizes(256, 112, 512)
    out = multicrop(hu, sizes, torch.Generator().manual_seed(1))
    assert [c.shape for c in out["global_crops"]] == [(3, 256, 256)] * 2
    assert [c.shape for c in out["local_crops"]] == [(3, 112, 112)] * 8
    assert [c.shape for c in out["gram_crops"]] == [(3, 512, 512)] * 2
    again = multicrop(hu, sizes, torch.Generator().manual_seed(1))
    other = multicrop(hu, sizes, torch.Generator().manual_seed(2))
    assert all(torch.equal(a, b) for a, b in zip(out["local_crops"], again["local_crops"]))
    assert not torch.equal(out["global_crops"][0], other["global_crops"][0])
    lo, hi = (-1000 - CT_MEAN) / CT_STD, (1000 - CT_MEAN) / CT_STD
    for crop in out["global_crops"] + out["local_crops"] + out["gram_crops"]:
        assert lo - 1e-5 <= crop.min() and crop.max() <= hi + 1e-5


def test_gram_teacher_crop_is_the_same_view_at_twice_the_resolution():
    no_distortion = IntensityConfig(jitter_prob=0, gamma_prob=0, blur_prob_global=(0, 0), solarize_prob_global=(0, 0))
    multicrop = CTMultiCrop(CropConfig(n_local=1), no_distortion)
    hu = torch.from_numpy(np.load(SLICE))
    out = multicrop(hu, CropSizes(128, 64, 256), torch.Generator().manual_seed(5))
    for student_view, gram_view in zip(out["global_crops"], out["gram_crops"]):
        down = F.interpolate(gram_view[None], size=(128, 128), mode="area")[0]
        corr = torch.corrcoef(torch.stack([down.flatten(), student_view.flatten()]))[0, 1]
        assert corr > 0.98


def test_intensity_augmentation_changes_the_global_crops():
    hu = torch.from_numpy(np.load(SLICE))
    plain = IntensityConfig(jitter_prob=0, gamma_prob=0, blur_prob_global=(0, 0), solarize_prob_global=(0, 0))
    strong = IntensityConfig(jitter_prob=1, blur_prob_global=(1, 1))
    sizes = CropSizes(64, 32)
    a = CTMultiCrop(CropConfig(n_local=1), plain)(hu, sizes, torch.Generator().manual_seed(3))
    b = CTMultiCrop(CropConfig(n_local=1), strong)(hu, sizes, torch.Generator().manual_seed(3))
    assert (a["global_crops"][0] - b["global_crops"][0]).abs().mean() > 0.01


def test_block_mask_hits_its_target_in_blocks():
    g = torch.Generator().manual_seed(0)
    for target in (10, 40, 80):
        mask = block_mask((16, 16), target, g)
        assert mask.shape == (16, 16)
        assert 0.5 * target <= mask.sum() <= target
    assert block_mask((16, 16), 0, g).sum() == 0


def test_mask_plan_masks_half_the_global_crops_with_spread_ratios():
    n_slots = 64
    ratios = [
        mask_ratio_for_slot(slot, n_slots, seeded_generator(0, 7), seeded_generator(slot), 0.5, (0.1, 0.5))
        for slot in range(n_slots)
    ]
    masked = sorted(r for r in ratios if r > 0)
    assert len(masked) == 32
    edges = np.linspace(0.1, 0.5, 33)
    assert all(edges[i] <= r <= edges[i + 1] for i, r in enumerate(masked))


def test_collate_is_crop_major_with_mask_weights():
    config = tiny_config()
    dataset = PretrainDataset(build_corpus(config), config, patch_size=16)
    keys = ShardedBatchSampler(len(dataset), 8, 0, 1, 0, 0, 1).batch_at(0)
    samples = [dataset[k] for k in keys]
    batch = collate_multicrop(samples)
    assert batch["global_crops"].shape == (16, 3, 64, 64)
    assert batch["local_crops"].shape == (4 * 8, 3, 32, 32)
    assert torch.equal(batch["global_crops"][8 + 3], samples[3]["global_crops"][1])
    assert torch.equal(batch["local_crops"][2 * 8 + 5], samples[5]["local_crops"][2])
    masks = batch["masks"]
    assert masks.shape == (16, 16)
    assert torch.equal(batch["mask_indices"], masks.flatten().nonzero().flatten())
    n_masked_images = int((masks.sum(1) > 0).sum())
    assert n_masked_images > 0
    assert torch.isclose(batch["masks_weight"].sum(), torch.tensor(float(n_masked_images)))


def test_sampler_shards_the_global_batch_across_ranks():
    one = ShardedBatchSampler(100, 8, 0, 1, seed=0, start_iteration=0, end_iteration=30)
    ranks = [ShardedBatchSampler(100, 8, r, 4, seed=0, start_iteration=0, end_iteration=30) for r in range(4)]
    for it in (0, 12, 29):
        assert sum((r.batch_at(it) for r in ranks), []) == one.batch_at(it)
    epoch = [key[0] for it in range(13) for key in one.batch_at(it)][:100]
    assert sorted(epoch) == list(range(100))  # every slice once per epoch
    with pytest.raises(ValueError, match="not divisible"):
        ShardedBatchSampler(100, 6, 0, 4, 0, 0, 1)


def test_resumed_sampler_continues_the_same_stream():
    full = list(ShardedBatchSampler(50, 4, 1, 2, seed=3, start_iteration=0, end_iteration=20))
    resumed = list(ShardedBatchSampler(50, 4, 1, 2, seed=3, start_iteration=13, end_iteration=20))
    assert resumed == full[13:]


def test_batches_do_not_depend_on_the_number_of_workers():
    config = tiny_config()
    dataset = PretrainDataset(build_corpus(config), config, patch_size=16)

    def batches(workers):
        sampler = ShardedBatchSampler(len(dataset), 8, 0, 1, 0, 0, 2)
        loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_multicrop, num_workers=workers)
        return list(loader)

    for a, b in zip(batches(0), batches(2)):
        assert torch.equal(a["global_crops"], b["global_crops"]) and torch.equal(a["masks"], b["masks"])


def test_stage3_mixes_resolutions_per_iteration():
    config = load_config("stage3")
    options = {(s.global_size, s.local_size, s.gram_size) for s in (crop_sizes_at(config, it) for it in range(200))}
    assert (512, 112, 768) in options and (768, 112, 1152) in options and (768, 336, 1152) in options
    assert options <= {(512, 112, 768), (768, 112, 1152), (768, 168, 1152), (768, 224, 1152), (768, 336, 1152)}


def test_corpus_sources_and_bundled_slice():
    config = tiny_config("data.synthetic_slices=3")
    corpus = build_corpus(config)
    assert len(corpus) == 4
    assert torch.equal(corpus[0], torch.from_numpy(BundledSlice().slice.astype(np.float32)))
    with pytest.raises(ValueError, match="no training data"):
        build_corpus(load_config("tiny", ["data.bundled_slice=false", "data.synthetic_slices=0"]))


def test_presets_carry_the_paper_numbers():
    s1, s2, s3 = (load_config(name) for name in ("stage1", "stage2", "stage3"))
    assert (s1.optim.iterations, s1.optim.lr, s1.optim.global_batch_size, s1.loss.koleo_weight) == (100_000, 2e-4, 512, 0.1)
    assert not s1.gram.enabled and s1.crops.n_local == 8 and s1.model.head_prototypes == 65536
    assert (s2.optim.lr, s2.gram.weight, s2.loss.koleo_weight, s2.crops.gram_sizes) == (5e-5, 2.0, 0.1, [512])
    assert (s3.optim.iterations, s3.optim.lr, s3.gram.enabled) == (10_000, 2.5e-5, True)
    assert min(s3.crops.global_sizes) == 512 and max(s3.crops.global_sizes) == 768
    assert min(s3.crops.local_sizes) == 112 and max(s3.crops.local_sizes) == 336


def test_config_overrides_and_errors(tmp_path):
    config = load_config("tiny", ["optim.lr=3e-4", "crops.global_scale=[0.4, 1.0]", "model.arch_overrides={depth: 1}"])
    assert config.optim.lr == 3e-4 and config.crops.global_scale == (0.4, 1.0) and config.model.arch_overrides == {"depth": 1}
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lrr: 1.0\n")
    with pytest.raises(ValueError, match="bad.yaml.*unknown key 'lrr'"):
        load_config(bad)
    with pytest.raises(ValueError, match="expected an integer"):
        load_config("tiny", ["optim.iterations=ten"])
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config("nope.yaml")
    with pytest.raises(ValueError, match="gram_sizes"):
        load_config("tiny", ["gram.enabled=true"])


def test_pretraining_reads_a_curated_corpus(tmp_path):
    """NIfTI CT volume -> `meddinov3.curate` corpus -> pretraining samples."""
    import nibabel as nib

    from meddinov3.curate import SliceCorpus
    from meddinov3.curate.runner import curate_paths

    volume = np.stack([synthetic_ct_slice(i, size=128) for i in range(4)], axis=-1).astype(np.int16)
    affine = np.diag([0.9, 0.9, 2.5, 1.0])  # 0.9 mm pixels: curation resamples to 0.45 mm
    nib.save(nib.Nifti1Image(volume, affine), tmp_path / "ct.nii.gz")
    curate_paths([str(tmp_path / "ct.nii.gz")], str(tmp_path / "corpus"))
    corpus = SliceCorpus(tmp_path / "corpus")
    assert len(corpus) == 4

    config = tiny_config(f"data.corpus={tmp_path / 'corpus'}", "data.bundled_slice=false", "data.synthetic_slices=0")
    slices = build_corpus(config)
    assert len(slices) == 4 and torch.equal(slices[2], torch.from_numpy(corpus[2].astype(np.float32)))
    dataset = PretrainDataset(slices, config, patch_size=16)
    batch = collate_multicrop([dataset[k] for k in ShardedBatchSampler(4, 8, 0, 1, 0, 0, 1).batch_at(0)])
    assert batch["global_crops"].shape == (16, 3, 64, 64) and torch.isfinite(batch["global_crops"]).all()
