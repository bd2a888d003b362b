"""evaluate_case against MONAI's metrics, called the release's way (one-hot, one label at a time)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage

from meddinov3.evaluation import evaluate_case
from meddinov3.evaluation.case import label_boxes, union_box
from meddinov3.evaluation.metrics import percentile_linear, surface_voxels

monai_metrics = pytest.importorskip("monai.metrics")

ANISOTROPIC = (2.5, 0.7, 0.9)


def monai_scores(pred, ref, spacing, label, tolerance_mm=1.0):
    """The release's call: binary one-hot of one label, spacing in mm, threshold in mm."""
    one_hot_pred = torch.from_numpy(pred == label)[None, None].float()
    one_hot_ref = torch.from_numpy(ref == label)[None, None].float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI warns on every empty mask
        dice = monai_metrics.compute_dice(one_hot_pred, one_hot_ref, include_background=True)
        nsd = monai_metrics.compute_surface_dice(
            one_hot_pred, one_hot_ref, class_thresholds=[tolerance_mm], include_background=True,
            spacing=list(spacing),
        )
        hd95 = monai_metrics.compute_hausdorff_distance(
            one_hot_pred, one_hot_ref, include_background=True, percentile=95, spacing=list(spacing)
        )
    return {"dice": float(dice), "nsd": float(nsd), "hd95": float(hd95)}


def assert_matches_monai(pred, ref, spacing, labels, tolerance_mm=1.0):
    ours = evaluate_case(pred, ref, spacing, labels, tolerance_mm=tolerance_mm)
    assert set(ours) == set(labels)
    for label in labels:
        if not (ref == label).any():
            assert all(math.isnan(v) for v in ours[label].values()), (label, ours[label])
            continue
        expected = monai_scores(pred, ref, spacing, label, tolerance_mm)
        for metric, value in expected.items():
            np.testing.assert_allclose(
                ours[label][metric], value, rtol=1e-6, atol=1e-6, equal_nan=True,
                err_msg=f"label {label} {metric}",
            )
    return ours


def random_label_volume(rng, shape, n_labels, smoothing=2.0):
    """Blobby multi-label volume: argmax of smoothed noise, thresholded to leave background."""
    noise = ndimage.gaussian_filter(rng.standard_normal((n_labels + 1, *shape)), (0, *[smoothing] * len(shape)))
    labels = noise.argmax(0)
    labels[noise.max(0) < np.quantile(noise.max(0), 0.4)] = 0
    return labels.astype(np.uint8)


def perturb(rng, labels, flip_fraction=0.02):
    """A plausible prediction: the reference, each label dilated/eroded, plus random speckle."""
    pred = labels.copy()
    for label in np.unique(labels[labels > 0]):
        mask = labels == label
        operation = ndimage.binary_dilation if rng.random() < 0.5 else ndimage.binary_erosion
        pred[mask] = 0
        pred[operation(mask) & ((pred == 0) | mask)] = label
    speckle = rng.random(labels.shape) < flip_fraction
    pred[speckle] = rng.integers(0, labels.max() + 1, speckle.sum())
    return pred


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_masks_with_anisotropic_spacing(seed):
    rng = np.random.default_rng(seed)
    ref = random_label_volume(rng, (14, 30, 26), n_labels=4)
    pred = perturb(rng, ref)
    assert_matches_monai(pred, ref, ANISOTROPIC, labels=[1, 2, 3, 4])


@pytest.mark.parametrize("tolerance_mm", [0.0, 0.5, 1.0, 2.0, 5.0])
def test_tolerances(tolerance_mm):
    rng = np.random.default_rng(10)
    ref = random_label_volume(rng, (12, 24, 24), n_labels=3)
    pred = perturb(rng, ref, flip_fraction=0.05)
    assert_matches_monai(pred, ref, (1.5, 0.5, 0.8), labels=[1, 2, 3], tolerance_mm=tolerance_mm)


def test_distance_exactly_at_tolerance_counts_as_correct():
    # Spacing 0.5 mm: surfaces two voxels apart are exactly 1.0 mm apart.
    ref = np.zeros((9, 9, 9), np.uint8)
    pred = np.zeros_like(ref)
    ref[2:5, 2:5, 2:5] = 1
    pred[2:5, 2:5, 4:7] = 1
    ours = assert_matches_monai(pred, ref, (0.5, 0.5, 0.5), labels=[1], tolerance_mm=1.0)
    assert ours[1]["nsd"] == 1.0


def test_label_absent_from_reference_is_nan_even_when_predicted():
    rng = np.random.default_rng(3)
    ref = random_label_volume(rng, (10, 20, 20), n_labels=2)
    pred = ref.copy()
    pred[0:3, 0:4, 0:4] = 7  # a label the reference never has
    ours = assert_matches_monai(pred, ref, ANISOTROPIC, labels=[1, 2, 7, 9])
    for label in (7, 9):
        assert all(math.isnan(v) for v in ours[label].values())


def test_empty_prediction_matches_monai_conventions():
    rng = np.random.default_rng(4)
    ref = random_label_volume(rng, (10, 20, 20), n_labels=3)
    pred = np.where(ref == 2, 0, ref).astype(np.uint8)  # label 2 missed entirely
    ours = assert_matches_monai(pred, ref, ANISOTROPIC, labels=[1, 2, 3])
    assert ours[2]["dice"] == 0.0 and ours[2]["nsd"] == 0.0 and math.isnan(ours[2]["hd95"])
    all_empty = assert_matches_monai(np.zeros_like(ref), ref, ANISOTROPIC, labels=[1, 2, 3])
    assert all(scores["dice"] == 0.0 for scores in all_empty.values())


@pytest.mark.parametrize(
    "pred_voxel, ref_voxel",
    [((3, 4, 5), (3, 4, 5)), ((3, 4, 5), (3, 4, 6)), ((0, 0, 0), (7, 11, 12)), ((2, 3, 3), (5, 9, 1))],
)
def test_one_voxel_structures(pred_voxel, ref_voxel):
    ref = np.zeros((8, 12, 13), np.uint8)
    pred = np.zeros_like(ref)
    ref[ref_voxel] = 1
    pred[pred_voxel] = 1
    assert_matches_monai(pred, ref, ANISOTROPIC, labels=[1])


def test_one_voxel_prediction_against_large_reference():
    rng = np.random.default_rng(5)
    ref = random_label_volume(rng, (10, 20, 22), n_labels=2)
    pred = np.zeros_like(ref)
    pred[5, 10, 11] = 1
    pred[0, 0, 0] = 2
    assert_matches_monai(pred, ref, ANISOTROPIC, labels=[1, 2])


def test_structures_touching_every_border():
    # Voxels on the volume border are surface (outside counts as background): a crop that
    # forgot this would see them as interior.
    ref = np.zeros((6, 10, 11), np.uint8)
    ref[:, :, :] = 1
    ref[2:4, 3:7, 3:8] = 2
    pred = np.ones_like(ref)
    pred[0:3, 0:5, 0:6] = 2
    pred[-1, -1, -1] = 3
    ref[-2:, -3:, -3:] = 3
    assert_matches_monai(pred, ref, ANISOTROPIC, labels=[1, 2, 3])


def test_two_dimensional_input():
    rng = np.random.default_rng(6)
    ref = random_label_volume(rng, (40, 36), n_labels=3)
    pred = perturb(rng, ref)
    assert_matches_monai(pred, ref, (0.8, 1.3), labels=[1, 2, 3])


def test_distant_fragments_far_outside_the_tolerance():
    # A stray prediction blob far from the organ widens the union box; HD95 must see it.
    ref = np.zeros((20, 40, 40), np.uint8)
    ref[8:12, 15:25, 15:25] = 1
    pred = ref.copy()
    pred[0:2, 0:3, 35:40] = 1
    assert_matches_monai(pred, ref, ANISOTROPIC, labels=[1])


def test_cropping_matches_full_volume_surfaces():
    rng = np.random.default_rng(7)
    volume = random_label_volume(rng, (10, 24, 24), n_labels=3)
    boxes = label_boxes(volume, [1, 2, 3])
    for label, box in boxes.items():
        full = surface_voxels(volume == label)
        cropped = np.zeros_like(full)
        cropped[box] = surface_voxels(volume[box] == label)
        np.testing.assert_array_equal(cropped, full)
    assert union_box(boxes[1], None) == boxes[1]


@pytest.mark.parametrize("shape", [(1,), (5,), (1, 1, 1), (2, 3, 1), (7, 9, 8), (4, 5, 6, 3)])
def test_surface_voxels_equal_scipy_erosion_edges(shape):
    rng = np.random.default_rng(sum(shape))
    for fill in (0.0, 0.3, 0.8, 1.0):
        mask = rng.random(shape) < fill
        np.testing.assert_array_equal(surface_voxels(mask), mask & ~ndimage.binary_erosion(mask))


def test_percentile_matches_torch_quantile():
    rng = np.random.default_rng(8)
    for size in (1, 2, 3, 19, 20, 21, 1000, 1001):
        values = (rng.random(size) * 50).astype(np.float32)
        expected = torch.quantile(torch.from_numpy(values), 0.95).item()
        assert percentile_linear(values, 95.0) == pytest.approx(expected, rel=1e-7, abs=0)


def test_labels_in_parallel_threads_give_identical_scores():
    rng = np.random.default_rng(9)
    ref = random_label_volume(rng, (12, 24, 24), n_labels=4)
    pred = perturb(rng, ref)
    serial = evaluate_case(pred, ref, ANISOTROPIC, [1, 2, 3, 4])
    threaded = evaluate_case(pred, ref, ANISOTROPIC, [1, 2, 3, 4], workers=3)
    assert serial == threaded


def test_label_zero_and_wide_integer_types():
    rng = np.random.default_rng(11)
    ref = random_label_volume(rng, (8, 16, 16), n_labels=2).astype(np.int32)
    pred = perturb(rng, ref).astype(np.int64)
    assert_matches_monai(pred, ref, ANISOTROPIC, labels=[0, 1, 2])


def test_boolean_masks_and_big_endian_arrays():
    rng = np.random.default_rng(12)
    ref = random_label_volume(rng, (8, 16, 16), n_labels=1)
    pred = perturb(rng, ref)
    expected = evaluate_case(pred, ref, ANISOTROPIC, [1])
    assert evaluate_case(pred.astype(bool), ref.astype(bool), ANISOTROPIC, [1]) == expected
    assert evaluate_case(pred.astype(">i2"), ref.astype(">i4"), ANISOTROPIC, [1]) == expected


@pytest.mark.parametrize(
    "pred, ref, spacing, tolerance, message",
    [
        (np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8), (1, 1), 1.0, "shape"),
        (np.zeros((4, 4), np.float32), np.zeros((4, 4), np.uint8), (1, 1), 1.0, "integer"),
        (np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8), (1, 1, 1), 1.0, "one value per axis"),
        (np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8), (1, 0), 1.0, "positive"),
        (np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8), (1, 1), -1.0, "tolerance"),
    ],
)
def test_bad_inputs_are_rejected(pred, ref, spacing, tolerance, message):
    with pytest.raises(ValueError, match=message):
        evaluate_case(pred, ref, spacing, [1], tolerance_mm=tolerance)
