"""`meddinov3.Segmenter`: arrays and SimpleITK images in memory give the label maps `meddinov3
predict` writes for the same volumes as NIfTI files, voxel for voxel; bad arrays are refused,
naming the problem, before the network runs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from standalone_models import NUM_CLASSES, model_folder, synthetic_cases

import meddinov3
from meddinov3.errors import InputError
from meddinov3.nnunet.prediction import predict
from meddinov3.nnunet.segmenter import array_input, image_input
from meddinov3.segmentation import MedDINOv3Segmenter

SHAPE, SPACING = (6, 64, 64), (3.0, 0.8, 0.8)  # (z, y, x); the model's grid: 96 x 96 at 0.533 mm


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A model folder (one fold, mirroring recorded), two synthetic CT cases and what `predict`
    wrote for them."""
    root = tmp_path_factory.mktemp("segmenter")
    with pytest.MonkeyPatch.context() as monkeypatch:
        model = model_folder(root, monkeypatch, 96, 64 * 0.8 / 96)
        cases = synthetic_cases(root / "raw", SHAPE, SPACING)
        written = predict(cases[0].parent, root / "predicted", model, device="cpu", show_progress=False)
        yield model, cases, written


@pytest.fixture(scope="module")
def segmenter(workspace):
    return meddinov3.Segmenter(workspace[0], device="cpu")


class NetworkCalls:
    def __enter__(self):
        self.calls = 0

        def count(module, args, output):
            self.calls += isinstance(module, MedDINOv3Segmenter)

        self.hook = torch.nn.modules.module.register_module_forward_hook(count)
        return self

    def __exit__(self, *exc):
        self.hook.remove()


def test_images_and_arrays_give_what_predict_writes(workspace, segmenter):
    _, cases, written = workspace
    assert segmenter.precision == "fp32" and segmenter.labels == {"background": 0, **{f"class{i}": i for i in range(1, 4)}}
    for case, label_file in zip(cases, written):
        expected = sitk.ReadImage(str(label_file))
        image = sitk.ReadImage(str(case))
        from_image = segmenter(image)
        assert isinstance(from_image, sitk.Image) and from_image.GetPixelID() == expected.GetPixelID()
        assert from_image.GetSize() == image.GetSize() and from_image.GetSpacing() == image.GetSpacing()
        assert from_image.GetOrigin() == image.GetOrigin() and from_image.GetDirection() == image.GetDirection()
        assert np.array_equal(sitk.GetArrayFromImage(from_image), sitk.GetArrayFromImage(expected))
        array = sitk.GetArrayFromImage(image)  # (z, y, x)
        from_array = segmenter(array, spacing=tuple(reversed(image.GetSpacing())))
        assert from_array.dtype == np.uint8 and from_array.shape == array.shape == SHAPE
        assert np.array_equal(from_array, sitk.GetArrayFromImage(expected))
        assert len(np.unique(from_array)) >= 3  # not a trivial map: the random network predicts organs


def test_probabilities_are_the_class_scores_behind_the_label_map(workspace, segmenter):
    image = sitk.ReadImage(str(workspace[1][0]))
    scores = segmenter.probabilities(image)
    assert scores.shape == (NUM_CLASSES, *SHAPE) and scores.dtype == np.float32
    assert np.allclose(scores.sum(0), 1, atol=1e-5) and scores.min() >= 0
    assert np.array_equal(scores.argmax(0), sitk.GetArrayFromImage(segmenter(image)))


def test_the_model_loads_once(workspace, tmp_path):
    model = shutil.copytree(workspace[0], tmp_path / "model")
    segmenter = meddinov3.Segmenter(model, device="cpu", use_mirroring=False)
    shutil.rmtree(model)
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(workspace[1][1])))
    with NetworkCalls() as network:
        first = segmenter(array, spacing=SPACING)
        assert np.array_equal(segmenter(array, spacing=SPACING), first)
    assert network.calls == 2 * SHAPE[0] // 2  # two slices a call, no mirroring


def ct(shape=SHAPE, dtype=np.int16) -> np.ndarray:
    return np.random.default_rng(0).integers(-1000, 1000, shape).astype(dtype)


def nan_at(array: np.ndarray, index: tuple, value: float) -> np.ndarray:
    array = array.astype(np.float32)
    array[index] = value
    return array


BAD = [
    ("2D array", ct((64, 64)), SPACING, "array: 2 axes, shape (64, 64); the model takes (z, y, x) arrays"),
    ("5D array", ct((1, 1, 6, 64, 64)), SPACING, "array: 5 axes, shape (1, 1, 6, 64, 64); the model takes"),
    ("two channels", ct((2, *SHAPE)), SPACING, "array: 2 channels (shape (2, 6, 64, 64)); the model takes 1"),
    ("no voxels", ct((0, 64, 64)), SPACING, "array: shape (1, 0, 64, 64) has no voxels"),
    ("NaN", nan_at(ct(), (2, 3, 4), np.nan), SPACING, "array: 1 of 24576 voxels are NaN or infinite"),
    ("infinity", nan_at(ct(), (0, 0, 0), -np.inf), SPACING, "array: 1 of 24576 voxels are NaN or infinite"),
    ("complex voxels", ct().astype(np.complex64), SPACING, "array: voxels of type complex64; expected numbers"),
    ("no spacing", ct(), None, "spacing: a numpy array needs its voxel spacing"),
    ("zero spacing", ct(), (3.0, 0.0, 0.8), "spacing: expected three positive, finite numbers"),
    ("negative spacing", ct(), (-3.0, 0.8, 0.8), "spacing: expected three positive, finite numbers"),
    ("NaN spacing", ct(), (3.0, float("nan"), 0.8), "spacing: expected three positive, finite numbers"),
    ("two spacings", ct(), (0.8, 0.8), "spacing: expected three positive, finite numbers"),
    ("text spacing", ct(), "3 0.8 0.8", "spacing: expected three numbers (sz, sy, sx) in mm, got '3 0.8 0.8'"),
    ("2D image", sitk.GetImageFromArray(ct((64, 64))), None, "image: a 2D image of size (64, 64); expected a 3D"),
    ("image and spacing", sitk.GetImageFromArray(ct()), SPACING, "spacing: a SimpleITK image carries its own"),
    ("two images", [sitk.GetImageFromArray(ct())] * 2, None, "image: 2 image(s) given; the model takes 1 channels"),
]


@pytest.mark.parametrize("image, spacing, message", [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_input_is_refused_before_the_network_runs(segmenter, image, spacing, message):
    with NetworkCalls() as network, pytest.raises(InputError) as error:
        segmenter(image, spacing=spacing)
    assert str(error.value).startswith(message)
    assert network.calls == 0
    with pytest.raises(InputError):
        segmenter.probabilities(image, spacing=spacing)


def test_multichannel_inputs_are_one_image_or_array_per_channel():
    images = [sitk.GetImageFromArray(ct()) for _ in range(2)]
    for image in images:
        image.SetSpacing((0.8, 0.7, 3.0))
    data, spacing = image_input(images, 2)
    assert data.shape == (2, *SHAPE) and data.dtype == np.float32 and spacing == [3.0, 0.7, 0.8]
    data, spacing = array_input(ct((2, *SHAPE)), SPACING, 2)
    assert data.shape == (2, *SHAPE) and spacing == list(SPACING)
    with pytest.raises(InputError, match=r"array: 3 axes, shape \(6, 64, 64\); the model takes \(2, z, y, x\) arrays"):
        array_input(ct(), SPACING, 2)
    images[1].SetSpacing((0.8, 0.8, 3.0))
    with pytest.raises(InputError, match=r"image of channel 1: size \(64, 64, 6\), spacing \(0.8, 0.8, 3.0\); channel 0"):
        image_input(images, 2)
