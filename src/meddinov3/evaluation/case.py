"""`evaluate_case`: the protocol metrics of every label of one predicted volume.

Speed comes from never touching the full volume per label: one pass per volume finds every
label's bounding box (`scipy.ndimage.find_objects`), and each label is then scored inside the
union of its predicted and reference boxes. Cropping to that union box changes nothing:
- no voxel outside it belongs to either mask, so the surface (erosion with outside = background)
  is the same as in the full volume;
- every surface voxel of both masks lies inside it, so the nearest-surface distances are too.
The tolerance never enters the box: distances are surface to surface, never to empty space.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import ndimage

from meddinov3.evaluation.metrics import ABSENT_FROM_REFERENCE, label_scores

Box = tuple[slice, ...]


def validate_inputs(
    pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float], tolerance_mm: float
) -> np.ndarray:
    """Check the arrays and numbers the way MONAI would reject them; return spacing as float64."""
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    for name, array in (("prediction", pred), ("reference", ref)):
        if not (np.issubdtype(array.dtype, np.integer) or array.dtype == bool):
            raise ValueError(f"{name} must hold integer labels, got dtype {array.dtype}")
    spacing_mm = np.asarray(spacing, dtype=np.float64)
    if spacing_mm.shape != (pred.ndim,):
        raise ValueError(f"spacing {tuple(spacing)} needs one value per axis of shape {pred.shape}")
    if not np.all(np.isfinite(spacing_mm)) or np.any(spacing_mm <= 0):
        raise ValueError(f"spacing must be finite and positive, got {tuple(spacing)}")
    if not math.isfinite(tolerance_mm) or tolerance_mm < 0:
        raise ValueError(f"tolerance must be finite and >= 0 mm, got {tolerance_mm}")
    return spacing_mm


def native_labels(array: np.ndarray) -> np.ndarray:
    """The array in a type `find_objects` takes: bool as uint8, big-endian (some NIfTI) as native."""
    if array.dtype == bool:
        return array.view(np.uint8)
    if not array.dtype.isnative:
        return array.astype(array.dtype.newbyteorder("="))
    return array


def label_boxes(volume: np.ndarray, labels: Sequence[int]) -> dict[int, Box | None]:
    """Bounding box of each label in one pass over the volume (None where the label is absent)."""
    positive = [label for label in labels if label > 0]
    found = ndimage.find_objects(volume, max_label=max(positive)) if positive else []
    boxes: dict[int, Box | None] = {label: found[label - 1] for label in positive}
    for label in labels:
        if label <= 0:  # find_objects skips 0 and below; these rare labels pay a full scan
            boxes[label] = _box_of_mask(volume == label)
    return boxes


def _box_of_mask(mask: np.ndarray) -> Box | None:
    boxes = ndimage.find_objects(mask.astype(np.uint8))
    return boxes[0] if boxes else None


def union_box(first: Box | None, second: Box | None) -> Box | None:
    if first is None or second is None:
        return first if second is None else second
    return tuple(slice(min(a.start, b.start), max(a.stop, b.stop)) for a, b in zip(first, second))


def evaluate_case(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float],
    labels: Iterable[int],
    tolerance_mm: float = 1.0,
    workers: int = 1,
) -> dict[int, dict[str, float]]:
    """DSC, NSD at `tolerance_mm` and HD95 of each label, as the MedDINOv3 release scored them.

    Args:
        pred, ref: integer label volumes of the same shape, axes in (z, y, x) order (any number
            of axes works, 2D included).
        spacing: voxel size in mm per axis, same order as the arrays.
        labels: the labels to score (usually every foreground label of the dataset).
        tolerance_mm: NSD tolerance; a surface voxel counts as correct if the other surface is
            within this distance (inclusive).
        workers: threads scoring labels concurrently (KD-tree queries release the GIL).

    Returns:
        `{label: {"dice": ..., "nsd": ..., "hd95": ...}}`; DSC and NSD in [0, 1], HD95 in mm.
        Equal to MONAI's `compute_dice`, `compute_surface_dice(class_thresholds=[tolerance_mm],
        spacing=spacing)` and `compute_hausdorff_distance(percentile=95, spacing=spacing)` on
        the one-hot masks of each label, with two conventions for empty masks:
        - a label absent from `ref` gives NaN for every metric (left out of means);
        - a label present in `ref` but absent from `pred` gives DSC 0, NSD 0 and HD95 NaN
          (MONAI's values: its percentile over infinite distances is NaN).
    """
    labels = [int(label) for label in labels]
    spacing_mm = validate_inputs(pred, ref, spacing, tolerance_mm)
    pred, ref = native_labels(pred), native_labels(ref)
    pred_boxes = label_boxes(pred, labels)
    ref_boxes = label_boxes(ref, labels)

    def score(label: int) -> dict[str, float]:
        if ref_boxes[label] is None:
            return ABSENT_FROM_REFERENCE.as_dict()
        box = union_box(pred_boxes[label], ref_boxes[label])
        return label_scores(pred[box] == label, ref[box] == label, spacing_mm, tolerance_mm).as_dict()

    # Largest boxes first so a slow label does not start last and idle the other threads.
    order = sorted(labels, key=lambda label: -_box_size(union_box(pred_boxes[label], ref_boxes[label])))
    if workers <= 1:
        scores = {label: score(label) for label in order}
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            scores = dict(zip(order, pool.map(score, order)))
    return {label: scores[label] for label in labels}


def _box_size(box: Box | None) -> int:
    return 0 if box is None else math.prod(s.stop - s.start for s in box)
