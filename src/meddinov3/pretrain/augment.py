"""DINOv3 multi-crop for CT slices: random resized crops, flips, CT intensity distortions.

Every random draw comes from an explicit torch.Generator, so a crop set is a pure function of
its seed: data order and augmentation do not depend on the number of processes or workers,
and a resumed run sees exactly the crops an uninterrupted one would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from meddinov3.pretrain.config import CropConfig, IntensityConfig
from meddinov3.pretrain.normalize import hu_to_unit, unit_to_input

Box = tuple[int, int, int, int]  # top, left, height, width


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * torch.rand((), generator=generator).item()


def _happens(generator: torch.Generator, probability: float) -> bool:
    return probability > 0 and torch.rand((), generator=generator).item() < probability


def sample_crop_box(
    height: int,
    width: int,
    scale: tuple[float, float],
    generator: torch.Generator,
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    attempts: int = 10,
) -> Box:
    """RandomResizedCrop's box: area fraction in `scale`, log-uniform aspect ratio in `ratio`."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(attempts):
        target = area * _uniform(generator, *scale)
        aspect = math.exp(_uniform(generator, *log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (), generator=generator))
            left = int(torch.randint(0, width - w + 1, (), generator=generator))
            return top, left, h, w
    # Fallback: the largest centred box within the ratio bounds.
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def resized_crop(image: torch.Tensor, box: Box, size: int, flip: bool) -> torch.Tensor:
    """Crop `box` from a (H, W) [0, 1] image and resize it to (size, size), bicubic with antialiasing."""
    top, left, h, w = box
    patch = image[top : top + h, left : left + w][None, None]
    out = F.interpolate(patch, size=(size, size), mode="bicubic", align_corners=False, antialias=True)[0, 0]
    # Bicubic overshoots; the image is a [0, 1] window, and gamma needs non-negative values.
    out = out.clamp(0, 1)
    return out.flip(-1) if flip else out


def gaussian_blur(image: torch.Tensor, sigma: float, kernel_size: int) -> torch.Tensor:
    radius = kernel_size // 2
    x = torch.arange(-radius, radius + 1, dtype=image.dtype)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    padded = F.pad(image[None, None], (radius, radius, radius, radius), mode="reflect")
    blurred = F.conv2d(padded, kernel.view(1, 1, 1, -1))
    blurred = F.conv2d(blurred, kernel.view(1, 1, -1, 1))
    return blurred[0, 0]


@dataclass
class CropSizes:
    global_size: int
    local_size: int
    gram_size: int | None = None


class CTMultiCrop:
    """Two global crops (+ their Gram-teacher versions) and n local crops of one HU slice."""

    def __init__(self, crops: CropConfig, intensity: IntensityConfig):
        self.crops = crops
        self.intensity = intensity

    def distort(self, unit: torch.Tensor, generator: torch.Generator, blur_prob: float, solarize_prob: float) -> torch.Tensor:
        """Intensity distortions on a [0, 1]-windowed crop, in DINOv3's order (jitter, blur, solarise)."""
        cfg = self.intensity
        if _happens(generator, cfg.jitter_prob):
            brightness = _uniform(generator, 1 - cfg.brightness, 1 + cfg.brightness)
            contrast = _uniform(generator, 1 - cfg.contrast, 1 + cfg.contrast)
            unit = (unit * brightness).clamp(0, 1)
            unit = ((unit - unit.mean()) * contrast + unit.mean()).clamp(0, 1)
        if _happens(generator, cfg.gamma_prob):
            unit = unit.pow(_uniform(generator, *cfg.gamma_range))
        if _happens(generator, blur_prob):
            unit = gaussian_blur(unit, _uniform(generator, *cfg.blur_sigma), cfg.blur_kernel)
        if _happens(generator, solarize_prob):
            unit = torch.where(unit >= 0.5, 1 - unit, unit)
        return unit

    def _flip(self, generator: torch.Generator) -> bool:
        return _happens(generator, self.crops.horizontal_flip_prob)

    def __call__(self, hu: torch.Tensor, sizes: CropSizes, generator: torch.Generator) -> dict[str, list[torch.Tensor]]:
        unit = hu_to_unit(hu)
        height, width = unit.shape
        global_crops, gram_crops, local_crops = [], [], []
        blur_probs = self.intensity.blur_prob_global
        solarize_probs = self.intensity.solarize_prob_global
        for blur_prob, solarize_prob in zip(blur_probs, solarize_probs):
            box = sample_crop_box(height, width, self.crops.global_scale, generator)
            flip = self._flip(generator)
            crop = resized_crop(unit, box, sizes.global_size, flip)
            global_crops.append(unit_to_input(self.distort(crop, generator, blur_prob, solarize_prob)))
            if sizes.gram_size is not None:
                # DINOv3 gives the Gram teacher the same view, undistorted, at its own resolution.
                gram_crops.append(unit_to_input(resized_crop(unit, box, sizes.gram_size, flip)))
        for _ in range(self.crops.n_local):
            box = sample_crop_box(height, width, self.crops.local_scale, generator)
            crop = resized_crop(unit, box, sizes.local_size, self._flip(generator))
            local_crops.append(unit_to_input(self.distort(crop, generator, self.intensity.blur_prob_local, 0.0)))
        out = {"global_crops": global_crops, "local_crops": local_crops}
        if gram_crops:
            out["gram_crops"] = gram_crops
        return out
