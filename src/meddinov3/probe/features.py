"""Frozen patch features of CT slices: the last block, or the decoder's four blocks concatenated.

A backbone here is anything with the DINOv3 ViT interface the probe uses: `patch_size`,
`n_blocks` and `get_intermediate_layers(x, n, reshape=True, norm=True)`. Features are computed on
the device the backbone's weights are on, in eval mode with no gradients, and handed back as
float16 on the CPU (half the disk and memory; a linear head does not miss the last bits).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from meddinov3.probe.cache import FeatureStore, digest, file_fingerprint
from meddinov3.probe.config import Layers
from meddinov3.probe.slices import model_input, read_hu_volume

if TYPE_CHECKING:
    from meddinov3.probe.preparation import ProbeData


def feature_blocks(backbone: nn.Module, layers: Layers) -> list[int]:
    """Block indices whose normed patch tokens form the features."""
    depth = int(backbone.n_blocks)
    if layers == "last":
        return [depth - 1]
    from meddinov3.segmentation import default_interaction_layers

    return default_interaction_layers(depth)


def input_channels(backbone: nn.Module) -> int:
    return int(getattr(getattr(backbone, "config", None), "in_chans", 3))


def backbone_device(backbone: nn.Module, fallback: torch.device) -> torch.device:
    first = next(iter(backbone.parameters()), None)
    return first.device if first is not None else fallback


def check_size(backbone: nn.Module, size: int) -> None:
    patch = int(backbone.patch_size)
    if size % patch:
        raise ValueError(f"--size {size} is not a multiple of the backbone's patch size {patch}")


@contextmanager
def frozen(backbone: nn.Module) -> Iterator[None]:
    """Eval mode and no autograd inside; the backbone's train/eval mode is restored after."""
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        backbone.train(was_training)


def slice_features(backbone: nn.Module, x: Tensor, blocks: Sequence[int]) -> Tensor:
    """(n, 3, S, S) model input -> (n, C * len(blocks), S/p, S/p) normed patch tokens."""
    maps = backbone.get_intermediate_layers(x, n=list(blocks), reshape=True, norm=True)
    return torch.cat([m.float() for m in maps], dim=1)


def extract(
    backbone: nn.Module,
    hu: np.ndarray,
    size: int,
    blocks: Sequence[int],
    device: torch.device,
    batch_size: int,
    advance: Callable[[int], None] = lambda n: None,
) -> np.ndarray:
    """(n, H, W) HU slices -> (n, C, h, w) float16 features, `batch_size` slices per forward pass."""
    channels = input_channels(backbone)
    parts = []
    with frozen(backbone):
        for start in range(0, len(hu), batch_size):
            x = model_input(hu[start : start + batch_size], size, channels).to(device)
            parts.append(slice_features(backbone, x, blocks).to("cpu", torch.float16).numpy())
            advance(len(x))
    return np.concatenate(parts)


def backbone_features(
    backbone: nn.Module,
    data: ProbeData,
    store: FeatureStore,
    blocks: Sequence[int],
    device: torch.device,
    advance: Callable[[int], None] = lambda n: None,
) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """Features of the chosen training slices (one array per case, in `data.train_slices` order)
    and of every slice of each held-out case, taken from `store` or computed into it."""
    config = data.config

    def features(part: str, image: Path, slices: np.ndarray | None) -> np.ndarray:
        found = store.get(part)
        if found is not None:
            advance(len(found))
            return found
        hu = read_hu_volume(image)
        hu = hu if slices is None else hu[slices]
        return store.put(part, extract(backbone, hu, config.size, blocks, device, config.extract_batch_size, advance))

    images = {case.name: case.image for case in data.dataset.train}
    train = [
        features(f"train/{name}-{digest([file_fingerprint(images[name]), slices.tolist()])}", images[name], slices)
        for name, slices in data.train_slices.items()
    ]
    test = {
        case.name: features(f"test/{case.name}-{digest(file_fingerprint(case.image))}", case.image, None)
        for case in data.dataset.test
    }
    return train, test
