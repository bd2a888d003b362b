"""nnU-Net's resampling into a configuration's grid and back, on the prediction device.

nnU-Net resamples images with the plan's `resampling_fn_data`, by default
`resample_data_or_seg_to_shape`: skimage's `resize` (a spline of the plan's order, 3 by default;
edges repeated; no anti-aliasing), in float64 on the CPU one slice at a time for anisotropic
volumes, each result clipped to the range of what was resized. The spline resize is linear and
separable, so along each axis it is a fixed matrix: that same `resize`, without the clip, applied
to an identity matrix. For 2D configurations (the slice axis is never resampled) the slices are
multiplied by the two in-plane matrices on the device and clipped as skimage clips: to each
slice's range where nnU-Net resizes slice by slice (the slice axis is the anisotropic one), else
to each channel's range over the volume. This is the plan's resampling to float32 rounding (what
the network was trained on); any other resampling function or layout runs as nnU-Net runs it.

Logits go back by linear interpolation, as the plan's export resampling defines it (a spline of
order 1), through nnU-Net's torch resampling or, for slices resampled within their plane, the
same bilinear interpolation called directly, which keeps the network's channels-last layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import torch


@lru_cache(maxsize=8)
def axis_matrix(size: int, new_size: int, order: int) -> np.ndarray:
    """(new_size, size): skimage's spline resize along one axis, as nnU-Net calls it, unclipped."""
    from skimage.transform import resize

    return resize(np.eye(size), (new_size, size), order=order, mode="edge", anti_aliasing=False, clip=False)


def _in_plane(spacing: list[float], new_spacing: list[float], force_separate_z: bool | None) -> tuple[bool, bool]:
    """(nnU-Net resamples slice by slice, and the slice axis is not resampled differently from the plane)."""
    from nnunetv2.preprocessing.resampling.default_resampling import determine_do_sep_z_and_axis

    separate, axis = determine_do_sep_z_and_axis(force_separate_z, spacing, new_spacing)
    return bool(separate), not separate or axis == 0


def _separable_plan(config: Any, spacing: list[float], target_spacing: list[float]) -> tuple[int, bool] | None:
    """(spline order, clip per slice) where nnU-Net's resampling is an in-plane spline; else None."""
    from nnunetv2.preprocessing.resampling.default_resampling import resample_data_or_seg_to_shape

    function = config.resampling_fn_data
    if len(config.patch_size) != 2 or getattr(function, "func", None) is not resample_data_or_seg_to_shape:
        return None
    options = function.keywords
    separate, in_plane = _in_plane(spacing, target_spacing, options.get("force_separate_z", False))
    if options.get("is_seg", False) or not in_plane:
        return None
    return options.get("order", 3), separate


class ImageResampler:
    """The normalised, cropped case (channels, *shape) in the configuration's grid, a block at a time:
    `block(start, stop)` gives slices start..stop as (n, channels, *in-plane) for 2D
    configurations, and the volume as (1, channels, *shape) for 3D ones, on `device`."""

    def __init__(self, config: Any, data: np.ndarray, spacing: list[float], target_spacing: list[float],
                 target_shape: tuple[int, ...], device: torch.device):
        self.data, self.device, self.is_2d = data, device, len(config.patch_size) == 2
        plan = _separable_plan(config, spacing, target_spacing)
        self.matrices = None
        if plan is not None:
            order, self.per_slice = plan
            self.matrices = [
                None if size == new else torch.from_numpy(axis_matrix(size, new, order)).float().to(device)
                for size, new in zip(data.shape[2:], target_shape[1:])
            ]
            if not self.per_slice:  # clipped to each channel's range over the volume
                flat = data.reshape(len(data), -1)
                self.channel_range = [torch.from_numpy(bound).to(device)[None, :, None, None]
                                      for bound in (flat.min(1), flat.max(1))]
        elif tuple(data.shape[1:]) != tuple(target_shape):
            self.data = config.resampling_fn_data(data, target_shape, spacing, target_spacing)

    def block(self, start: int, stop: int) -> torch.Tensor:
        if not self.is_2d:
            return torch.from_numpy(np.ascontiguousarray(self.data)[None]).to(self.device)
        items = torch.from_numpy(self.data[:, start:stop]).to(self.device).transpose(0, 1)
        if self.matrices is None or self.matrices == [None, None]:
            return items
        if self.per_slice:
            low, high = items.amin((2, 3), keepdim=True), items.amax((2, 3), keepdim=True)
        else:
            low, high = self.channel_range
        rows, columns = self.matrices
        resized = items if rows is None else torch.matmul(rows, items)
        resized = resized if columns is None else torch.matmul(resized, columns.T)
        return resized.clamp_(low, high)


def resample_logits(logits: torch.Tensor, shape: Sequence[int], spacing: list[float], new_spacing: list[float]) -> torch.Tensor:
    """Logits (n, classes, *spatial) of slices (2D) or a volume (3D) resampled linearly to `shape`,
    on their device. 2D items are volumes one slice thick to nnU-Net (the slice spacing decides
    its anisotropy handling)."""
    import torch.nn.functional as F
    from nnunetv2.preprocessing.resampling.resample_torch import resample_torch_fornnunet

    if tuple(logits.shape[2:]) == tuple(shape):
        return logits
    if logits.ndim == 4 and _in_plane(spacing, new_spacing, None)[1]:
        return F.interpolate(logits, tuple(shape), mode="bilinear", align_corners=False, antialias=False)
    n, classes, *spatial = logits.shape
    volumes = logits.reshape(n * classes, *([1] if len(spatial) == 2 else []), *spatial)
    new_shape = [*([1] if len(spatial) == 2 else []), *shape]
    resampled = resample_torch_fornnunet(volumes, new_shape, spacing, new_spacing, is_seg=False,
                                         num_threads=torch.get_num_threads(), device=logits.device)
    return resampled.reshape(n, classes, *shape)
