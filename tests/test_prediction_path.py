"""The prediction path around the network (`meddinov3.nnunet.inference`) against nnU-Net's own:
`DefaultPreprocessor.run_case`, the predictor's sliding window and
`convert_predicted_logits_to_segmentation_with_correct_shape`, run here directly.

Preprocessed images must match nnU-Net's to float32 rounding (its spline resampling, rebuilt as
matrix products); label maps must match up to resampling differences (the logits go back to the
input grid by linear interpolation in both, in torch here and in scipy there): mean DSC >= 0.99
per case, on synthetic CT cases in every resampling layout nnU-Net distinguishes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from conftest import FLOAT32_TOL, relative_error
from standalone_models import NUM_CLASSES, model_folder, synthetic_cases, unet_3d_model_folder

from meddinov3.nnunet.inference import CasePredictor, prepare
from meddinov3.nnunet.prediction import load_predictor
from meddinov3.nnunet.resampling import ImageResampler

MIN_DSC = 0.99
# Image spacing (z, y, x) of 8 x 64 x 64 (or 8 x 16 x 64) volumes, model spacing 0.533 mm at patch 96:
LAYOUTS = {
    # thick slices: nnU-Net resamples slice by slice, each clipped to its own range
    "thick slices": ((8, 64, 64), (3.0, 0.8, 0.8)),
    # nearly isotropic: one resize of the volume, clipped to its range
    "near-isotropic": ((8, 64, 64), (1.0, 0.8, 0.8)),
    # the coarse axis lies in the plane: nnU-Net's own functions (CPU in, torch out); y is padded
    "coarse in-plane axis": ((8, 16, 64), (0.8, 3.0, 0.8)),
}


def nnunet_preprocessed(predictor, file):
    preprocessor = predictor.configuration_manager.preprocessor_class(verbose=False)
    return preprocessor.run_case([str(file)], None, predictor.plans_manager, predictor.configuration_manager,
                                 predictor.dataset_json)


def nnunet_labels(predictor, file) -> np.ndarray:
    from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape

    data, _, properties = nnunet_preprocessed(predictor, file)
    logits = predictor.predict_logits_from_preprocessed_data(torch.from_numpy(data))
    return convert_predicted_logits_to_segmentation_with_correct_shape(
        logits, predictor.plans_manager, predictor.configuration_manager, predictor.label_manager, properties
    )


def read(predictor, file):
    data, properties = predictor.plans_manager.image_reader_writer_class().read_images([str(file)])
    return data, properties["spacing"]


def mean_dsc(a: np.ndarray, b: np.ndarray) -> float:
    scores = []
    for label in range(1, NUM_CLASSES):
        x, y = a == label, b == label
        if x.any() or y.any():
            scores.append(2 * np.count_nonzero(x & y) / (np.count_nonzero(x) + np.count_nonzero(y)))
    return float(np.mean(scores))


def as_masked_zscore_model(model):
    """An MRI-like plan: z-score normalisation inside the (hole-filled) nonzero mask."""
    plans = json.loads((model / "plans.json").read_text(encoding="utf-8"))
    plans["configurations"]["2d"].update(normalization_schemes=["ZScoreNormalization"], use_mask_for_norm=[True])
    (model / "plans.json").write_text(json.dumps(plans), encoding="utf-8")


def zero_outside_the_body(file):
    """The CT case with air set to 0 (and a hole of zeros inside the body): cropped, then masked."""
    image = sitk.ReadImage(str(file))
    voxels = sitk.GetArrayFromImage(image)
    voxels[voxels < -500] = 0
    voxels[3:5, 30:33, 30:33] = 0
    masked = sitk.GetImageFromArray(voxels)
    masked.CopyInformation(image)
    sitk.WriteImage(masked, str(file))


@pytest.mark.parametrize("layout, masked", [*((layout, False) for layout in LAYOUTS), ("thick slices", True)],
                         ids=[*LAYOUTS, "masked z-score"])
def test_preprocessed_images_match_nnunets_to_float32_rounding(layout, masked, tmp_path, monkeypatch):
    shape, spacing = LAYOUTS[layout]
    model = model_folder(tmp_path, monkeypatch, 96, 64 * 0.8 / 96)
    if masked:
        as_masked_zscore_model(model)
    predictor = load_predictor(model, device="cpu")
    for file in synthetic_cases(tmp_path / "raw", shape, spacing):
        if masked:
            zero_outside_the_body(file)
        expected, _, _ = nnunet_preprocessed(predictor, file)
        case = prepare(predictor, *read(predictor, file))
        images = ImageResampler(predictor.configuration_manager, case.data, case.spacing, case.target_spacing,
                                case.target_shape, torch.device("cpu"))
        ours = images.block(0, case.data.shape[1]).transpose(0, 1)
        assert relative_error(ours, torch.from_numpy(expected)) <= FLOAT32_TOL


def as_region_model(model):
    """nnU-Net's region-based labels (a sigmoid per region, nested regions painted in order) for a
    model with two output channels."""
    dataset = json.loads((model / "dataset.json").read_text(encoding="utf-8"))
    dataset.update(labels={"background": 0, "body": [1, 2, 3], "organs": [2, 3]}, regions_class_order=[1, 2])
    (model / "dataset.json").write_text(json.dumps(dataset), encoding="utf-8")


@pytest.mark.parametrize(
    "layout, patch, mirroring, folds, slices, regions",
    [*(pytest.param(layout, 96, False, 1, None, False, id=layout) for layout in LAYOUTS),
     # 4 overlapping tiles per slice, mirrored, two folds averaged
     pytest.param("thick slices", 64, True, 2, 4, False, id="tiles, mirroring, two folds"),
     pytest.param("thick slices", 96, False, 1, None, True, id="regions")],
)
def test_label_maps_match_nnunets_path(layout, patch, mirroring, folds, slices, regions, tmp_path, monkeypatch):
    shape, spacing = LAYOUTS[layout]
    shape = (slices or shape[0], *shape[1:])
    model = model_folder(tmp_path, monkeypatch, patch, 64 * 0.8 / 96, folds, num_classes=2 if regions else NUM_CLASSES)
    if regions:
        as_region_model(model)
    predictor = load_predictor(model, folds=tuple(range(folds)), device="cpu", use_mirroring=mirroring)
    ours = CasePredictor(predictor, "fp32")
    if mirroring:
        assert ours.window.flips == [(2,), (3,), (2, 3)]
    for file in synthetic_cases(tmp_path / "raw", shape, spacing):
        expected = nnunet_labels(predictor, file)
        labels = ours.labels(*read(predictor, file))
        assert labels.shape == expected.shape == shape and labels.dtype == np.uint8
        assert len(np.unique(expected)) >= 3  # the random network predicts two labels at least
        assert mean_dsc(labels, expected) >= MIN_DSC, f"{file.name}: DSC {mean_dsc(labels, expected):.4f}"


def test_3d_label_maps_match_nnunets_path(tmp_path, monkeypatch):
    """nnU-Net's 3D U-Net (the `nnunet` method at 3d_fullres): the volume resampled in all three
    axes by nnU-Net's own function, 3D tiles, the logits back by nnU-Net's torch resampling."""
    model = unet_3d_model_folder(tmp_path, monkeypatch, (8, 48, 48), (2.0, 0.6, 0.6))
    predictor = load_predictor(model, device="cpu", use_mirroring=False)
    ours = CasePredictor(predictor, None)
    assert not ours.is_2d
    for file in synthetic_cases(tmp_path / "raw", (8, 64, 64), (3.0, 0.8, 0.8)):
        expected = nnunet_labels(predictor, file)
        labels = ours.labels(*read(predictor, file))
        assert labels.shape == expected.shape == (8, 64, 64)
        assert len(np.unique(expected)) >= 3
        assert mean_dsc(labels, expected) >= MIN_DSC, f"{file.name}: DSC {mean_dsc(labels, expected):.4f}"
