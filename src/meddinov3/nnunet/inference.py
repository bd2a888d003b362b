"""One case from image array to label map, on the prediction device, as nnU-Net defines the steps.

nnU-Net's own path (DefaultPreprocessor.run_case, the predictor's sliding window, then
`convert_predicted_logits_to_segmentation_with_correct_shape`) resamples with scipy on the CPU,
once into the configuration's grid and once per class channel back out of it, and takes the
argmax on the CPU: for a 512 x 512 CT at 2d_896 most of the time of a prediction. Here:
- transposition, cropping to the nonzero bounding box and intensity normalisation are nnU-Net's
  (its normaliser classes, on the CPU, on the cropped volume);
- resampling into the configuration's grid is the plan's (a spline of order 3 by default), as
  matrix products on the prediction device (see `meddinov3.nnunet.resampling`);
- the logits go back to the input grid by nnU-Net's torch resampling (`resample_torch_fornnunet`:
  linear in-plane, nearest along an anisotropic axis; the plan's export resampling is linear too)
  on the device;
- the label map is nnU-Net's: the argmax of the logits resampled to the input grid, taken on the
  device; only the label map (or, when asked for, the class probabilities) leaves it.
2D configurations go through the volume a block of slices at a time (slices are independent),
which bounds the memory the logits take; 3D ones as one block.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch

from meddinov3.nnunet.resampling import ImageResampler, resample_logits
from meddinov3.nnunet.sliding_window import Window, sliding_window_logits

# Logits of one block (float32, on the device) stay under this; 20 slices of 16 classes at 896.
BLOCK_BYTES = 1 << 30
# Network inputs per call (tiles x mirrorings). A chosen value: GPUs fill better with batches; on
# CPUs a batch is no faster and costs memory at 896 x 896.
IMAGES_PER_FORWARD = {"cuda": 8}
DEFAULT_IMAGES_PER_FORWARD = 2


@dataclass
class Prepared:
    """A case after nnU-Net's transposition, cropping and normalisation (axes transposed)."""

    data: np.ndarray  # (channels, *cropped shape), float32, normalised
    bbox: list[list[int]]  # the crop in the transposed input, half-open
    shape_before_cropping: tuple[int, ...]
    spacing: list[float]  # of the input, transposed
    target_spacing: list[float]  # of the configuration (2D: the input's slice spacing first)
    target_shape: tuple[int, ...]


def nonzero_bbox(data: np.ndarray) -> list[list[int]]:
    """nnU-Net's crop: the bounding box of the voxels nonzero in any channel (all of it if none).
    nnU-Net fills holes in that mask first; a hole lies inside the box, so the box is the same."""
    nonzero = np.any(data != 0, axis=0)
    bbox = []
    for axis in range(nonzero.ndim):
        hits = np.flatnonzero(np.any(nonzero, axis=tuple(a for a in range(nonzero.ndim) if a != axis)))
        bbox.append([int(hits[0]), int(hits[-1]) + 1] if hits.size else [0, nonzero.shape[axis]])
    return bbox


def prepare(predictor: Any, data: np.ndarray, spacing: Sequence[float]) -> Prepared:
    """nnU-Net's preprocessing up to resampling (DefaultPreprocessor.run_case_npy)."""
    from nnunetv2.preprocessing.cropping.cropping import create_nonzero_mask
    from nnunetv2.preprocessing.resampling.default_resampling import compute_new_shape

    plans, config = predictor.plans_manager, predictor.configuration_manager
    data = data.transpose([0, *[axis + 1 for axis in plans.transpose_forward]])
    spacing = [float(spacing[axis]) for axis in plans.transpose_forward]
    bbox = nonzero_bbox(data)
    cropped = np.array(data[(slice(None), *[slice(a, b) for a, b in bbox])], dtype=np.float32)  # a copy
    if any(config.use_mask_for_norm):
        seg = np.where(create_nonzero_mask(cropped), np.int8(0), np.int8(-1))[None]
    else:  # the normalisers read the mask only for use_mask_for_norm; nnU-Net's fill-holes is slow
        seg = np.zeros((1, *cropped.shape[1:]), dtype=np.int8)
    cropped = config.preprocessor_class(verbose=False)._normalize(
        cropped, seg, config, plans.foreground_intensity_properties_per_channel
    )
    target_spacing = list(config.spacing)
    if len(target_spacing) < len(spacing):
        target_spacing = [spacing[0], *target_spacing]
    target_shape = tuple(int(n) for n in compute_new_shape(cropped.shape[1:], spacing, target_spacing))
    return Prepared(cropped, bbox, tuple(data.shape[1:]), spacing, target_spacing, target_shape)


def argmax_classes(logits: torch.Tensor) -> torch.Tensor:
    """Argmax over the classes (dim 1), in the channels-last layout the ViT networks' outputs
    already have: on CPUs an argmax over a non-innermost dimension is about 4x slower."""
    layout = torch.channels_last if logits.ndim == 4 else torch.channels_last_3d
    return logits.contiguous(memory_format=layout).argmax(1)


class CasePredictor:
    """The networks of an nnU-Net predictor on its device, and the steps around them for one case.
    `meddinov3 predict` and `meddinov3.Segmenter` both segment through it."""

    def __init__(self, predictor: Any, precision: str | None):
        self.predictor = predictor
        self.device = predictor.device
        network = predictor.network.to(self.device).eval()
        parameters = predictor.list_of_parameters
        self.networks = [network] if len(parameters) == 1 else [self._fold(network, p) for p in parameters]
        config = predictor.configuration_manager
        self.is_2d = len(config.patch_size) == 2
        mirror_axes = tuple(predictor.allowed_mirroring_axes or ()) if predictor.use_mirroring else ()
        images = IMAGES_PER_FORWARD.get(self.device.type, DEFAULT_IMAGES_PER_FORWARD)
        self.window = Window(tuple(int(p) for p in config.patch_size), predictor.tile_step_size, mirror_axes, images)
        self.label_manager = predictor.label_manager
        # nnU-Net's own choice where the model records none: fp16 autocast on CUDA, none elsewhere.
        self.precision = precision or ("fp16" if self.device.type == "cuda" else "fp32")
        self._forwards = [partial(self._forward, network) for network in self.networks]

    def _forward(self, network: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
        from meddinov3.precision import autocast

        with autocast(self.precision, self.device):  # fp32: autocast off
            return network(batch)

    def _fold(self, network: torch.nn.Module, parameters: dict) -> torch.nn.Module:
        fold = copy.deepcopy(getattr(network, "_orig_mod", network))
        fold.load_state_dict(parameters)
        return fold.to(self.device).eval()

    def _blocks(self, case: Prepared) -> Iterator[tuple[int, torch.Tensor]]:
        """(first item, logits on the cropped input grid (n, classes, *item shape)), item by item:
        items are slices for 2D configurations, the whole volume (one item) for 3D ones."""
        classes = self.label_manager.num_segmentation_heads
        spatial = case.target_shape[1:] if self.is_2d else case.target_shape
        padded = [max(s, p) for s, p in zip(spatial, self.window.patch_size)]
        per_block = max(1, BLOCK_BYTES // (4 * classes * int(np.prod(padded)))) if self.is_2d else 1
        items_total = case.data.shape[1] if self.is_2d else 1
        cropped = case.data.shape[2:] if self.is_2d else case.data.shape[1:]
        config = self.predictor.configuration_manager
        images = ImageResampler(config, case.data, case.spacing, case.target_spacing, case.target_shape, self.device)
        for start in range(0, items_total, per_block):
            items = images.block(start, start + per_block)
            for first, logits in sliding_window_logits(self._forwards, items, self.window, classes):
                yield start + first, resample_logits(logits, cropped, case.target_spacing, case.spacing)

    def _items(self, array: np.ndarray) -> np.ndarray:
        """`array` (..., *transposed shape) seen as items (first axis) the way `_blocks` yields them."""
        return np.moveaxis(array, -3, 0) if self.is_2d else array[None]

    @torch.inference_mode()
    def labels(self, data: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
        """The label map of `data` (channels, *spatial) in its own grid: uint8 (uint16 past 254 labels)."""
        case = prepare(self.predictor, data, spacing)
        few = len(self.label_manager.foreground_labels) < 255  # nnU-Net's choice of label type
        labels = np.zeros(case.shape_before_cropping, dtype=np.uint8 if few else np.uint16)
        inside = self._items(labels[tuple(slice(a, b) for a, b in case.bbox)])
        for first, logits in self._blocks(case):
            if self.label_manager.has_regions:
                block = self.label_manager.convert_logits_to_segmentation(logits.transpose(0, 1))
            else:
                block = argmax_classes(logits)
            inside[first : first + len(logits)] = block.to(torch.uint8 if few else torch.int32).cpu().numpy()
        return np.ascontiguousarray(labels.transpose(self.predictor.plans_manager.transpose_backward))

    @torch.inference_mode()
    def probabilities(self, data: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
        """Class probabilities (classes, *spatial) of `data` in its own grid, float32; outside the
        nonzero crop the background's (nnU-Net's `revert_cropping_on_probabilities`)."""
        case = prepare(self.predictor, data, spacing)
        probabilities = np.zeros((self.label_manager.num_segmentation_heads, *case.shape_before_cropping), np.float32)
        if not self.label_manager.has_regions:
            probabilities[0] = 1
        inside = self._items(probabilities[(slice(None), *[slice(a, b) for a, b in case.bbox])])
        for first, logits in self._blocks(case):
            block = self.label_manager.apply_inference_nonlin(logits.transpose(0, 1)).transpose(0, 1)
            inside[first : first + len(logits)] = block.cpu().numpy()
        transpose = self.predictor.plans_manager.transpose_backward
        return np.ascontiguousarray(probabilities.transpose([0, *[axis + 1 for axis in transpose]]))
