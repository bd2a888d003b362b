"""Segment images already in memory: numpy arrays and SimpleITK images, with a trained model folder.

    seg = Segmenter("nnUNet_results/Dataset501_X/MedDINOv3Trainer__nnUNetPlans__2d_896")
    labels = seg(volume, spacing=(2.5, 0.8, 0.8))   # numpy (z, y, x) in, numpy (z, y, x) out
    label_image = seg(sitk.ReadImage("ct.nii.gz"))   # SimpleITK in, SimpleITK out (same geometry)

The model loads once. Every call goes through the steps `meddinov3 predict` runs on a file
(`meddinov3.nnunet.inference.CasePredictor`), after the input has been turned into what nnU-Net's
SimpleITK reader makes of a file: float32 voxels (channels, z, y, x) and the spacing in that
order. So an image read from a file gives the label map `predict` writes for that file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from meddinov3.errors import InputError
from meddinov3.images import checked_image, non_finite_problem
from meddinov3.images.geometry import spacing_problem

if TYPE_CHECKING:
    import SimpleITK as sitk


class ArrayInputError(InputError, ValueError):
    """An array, image or spacing `Segmenter` cannot segment; the message names the problem."""


def _checked_spacing(spacing: Any) -> list[float]:
    if spacing is None:
        raise ArrayInputError("spacing: a numpy array needs its voxel spacing, spacing=(sz, sy, sx) in mm")
    try:
        values = [float(s) for s in spacing]
    except (TypeError, ValueError):
        raise ArrayInputError(f"spacing: expected three numbers (sz, sy, sx) in mm, got {spacing!r}") from None
    if len(values) != 3 or not all(math.isfinite(s) and s > 0 for s in values):
        raise ArrayInputError(f"spacing: expected three positive, finite numbers (sz, sy, sx) in mm, got {spacing!r}")
    problem = spacing_problem(values)
    if problem:
        raise ArrayInputError(f"spacing: {problem}")
    return values


def array_input(array: Any, spacing: Any, num_channels: int) -> tuple[np.ndarray, list[float]]:
    """(float32 (channels, z, y, x), spacing) after the checks; ArrayInputError naming the problem."""
    array = np.asarray(array)
    if array.dtype.kind not in "biuf":
        raise ArrayInputError(f"array: voxels of type {array.dtype}; expected numbers (integers or floats)")
    layout = "(z, y, x)" if num_channels == 1 else f"({num_channels}, z, y, x)"
    if array.ndim == 3 and num_channels == 1:
        array = array[None]
    elif array.ndim != 4:
        raise ArrayInputError(f"array: {array.ndim} axes, shape {array.shape}; the model takes {layout} arrays")
    elif array.shape[0] != num_channels:
        raise ArrayInputError(
            f"array: {array.shape[0]} channels (shape {array.shape}); the model takes {num_channels}: a {layout} array"
        )
    if array.size == 0:
        raise ArrayInputError(f"array: shape {array.shape} has no voxels")
    data = array.astype(np.float32)  # as nnU-Net's reader gives voxels (a float64 past 3.4e38 turns infinite)
    problem = non_finite_problem(data)
    if problem:
        raise ArrayInputError(f"array: {problem}")
    return data, _checked_spacing(spacing)


def image_input(images: Sequence[sitk.Image], num_channels: int) -> tuple[np.ndarray, list[float]]:
    """What nnU-Net's SimpleITK reader makes of these images as files: float32 (channels, z, y, x)
    and |spacing| in (z, y, x) order; one image per channel, all of one grid."""
    import SimpleITK as sitk

    if len(images) != num_channels:
        raise ArrayInputError(f"image: {len(images)} image(s) given; the model takes {num_channels} channels, one image each")
    names = ["image"] if num_channels == 1 else [f"image of channel {c}" for c in range(num_channels)]
    images = [checked_image(image, name) for image, name in zip(images, names)]
    for image, name in zip(images[1:], names[1:]):
        if image.GetSize() != images[0].GetSize() or image.GetSpacing() != images[0].GetSpacing():
            raise ArrayInputError(f"{name}: size {image.GetSize()}, spacing {image.GetSpacing()}; channel 0 has "
                                  f"{images[0].GetSize()}, {images[0].GetSpacing()}")
    data = np.stack([sitk.GetArrayFromImage(image) for image in images]).astype(np.float32)
    return data, [abs(s) for s in reversed(images[0].GetSpacing())]


class Segmenter:
    """A trained model folder (what `meddinov3 predict -m` takes), loaded once, that segments
    numpy arrays and SimpleITK images. See the module's docstring."""

    def __init__(self, model: str | os.PathLike, folds: Sequence[int | str] = (0,), device: str = "auto",
                 precision: str | None = None, use_mirroring: bool = True,
                 checkpoint_name: str = "checkpoint_final.pth", tile_step_size: float = 0.5):
        from meddinov3.nnunet.inference import CasePredictor
        from meddinov3.nnunet.prediction import load_predictor, prediction_precision

        predictor = load_predictor(model, folds, checkpoint_name, device, tile_step_size, use_mirroring)
        self.precision = prediction_precision(predictor, precision)
        self.device = predictor.device
        self.num_channels = len(predictor.dataset_json["channel_names"])
        self.labels = dict(predictor.dataset_json["labels"])  # name -> label value
        self._case = CasePredictor(predictor, self.precision)

    def _input(self, image: Any, spacing: Any) -> tuple[np.ndarray, list[float], Any]:
        import SimpleITK as sitk

        channels = list(image) if isinstance(image, (list, tuple)) else [image]
        if all(isinstance(c, sitk.Image) for c in channels):
            if spacing is not None:
                raise ArrayInputError("spacing: a SimpleITK image carries its own; pass spacing only with arrays")
            return (*image_input(channels, self.num_channels), channels[0])
        return (*array_input(image, spacing, self.num_channels), None)

    def __call__(self, image: Any, spacing: Sequence[float] | None = None) -> Any:
        """The label map: for a numpy array (z, y, x) or (channels, z, y, x) with `spacing` (sz, sy, sx)
        in mm, a uint8 array (z, y, x); for a SimpleITK image (a list of them, one per channel, for
        multi-channel models), a SimpleITK image with its geometry."""
        import SimpleITK as sitk

        data, voxel_spacing, like = self._input(image, spacing)
        labels = self._case.labels(data, voxel_spacing)
        if like is None:
            return labels
        result = sitk.GetImageFromArray(labels)
        result.CopyInformation(like)
        return result

    def probabilities(self, image: Any, spacing: Sequence[float] | None = None) -> np.ndarray:
        """Class probabilities (softmax of the logits; sigmoid per region for region-based models)
        as float32 (classes, z, y, x), classes in label order; inputs as for calling the Segmenter."""
        data, voxel_spacing, _ = self._input(image, spacing)
        return self._case.probabilities(data, voxel_spacing)
