"""Segment each held-out volume slice by slice with the trained head and score it per label."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from meddinov3.evaluation.case import evaluate_case
from meddinov3.evaluation.reading import LabelImage
from meddinov3.probe.classifier import LinearHead


def predict_volume(head: LinearHead, features: np.ndarray, native_hw: tuple[int, int], batch_size: int) -> np.ndarray:
    """(z, C, h, w) features -> (z, H, W) labels: logits upsampled to the native in-plane size, argmax."""
    device = head.mean.device
    slices = []
    with torch.inference_mode():
        for start in range(0, len(features), batch_size):
            x = torch.from_numpy(np.array(features[start : start + batch_size])).to(device)
            slices.append(head(x, native_hw).argmax(dim=1).to("cpu", torch.uint8).numpy())
    return np.concatenate(slices)


def score_case(
    head: LinearHead, features: np.ndarray, reference: LabelImage, labels: Sequence[int], tolerance_mm: float,
    batch_size: int,
) -> dict[int, dict[str, float]]:
    """DSC, NSD and HD95 per label of the head's segmentation, with the release's protocol."""
    prediction = predict_volume(head, features, reference.array.shape[1:], batch_size)
    return evaluate_case(prediction, reference.array, reference.spacing_zyx, labels, tolerance_mm)
