"""evaluate_case against MONAI's metrics called per label, the MedDINOv3 release's way.

A synthetic CT-sized case with the 13 BTCV organs (ellipsoids with wavy surfaces at
anatomical-ish sizes and places) and a prediction that shifts, scales and roughens each organ
and adds a few false-positive blobs. Both sides score DSC, NSD at 1 mm and HD95 for every
organ; the table gives both times, the speed-up and the largest difference in any number.

    python benchmarks/bench_evaluation.py                      # small, ~1 minute on 2 cores
    python benchmarks/bench_evaluation.py --size 120x512x512   # paper-sized CT, minutes for MONAI
"""

from __future__ import annotations

import argparse
import math
import os
import time
import warnings
from dataclasses import dataclass

import numpy as np

# Semi-axes (z, y, x) in mm and centre as a fraction of the field of view (z, y, x).
ORGANS = {
    "spleen": ((55, 45, 40), (0.55, 0.55, 0.78)),
    "right kidney": ((50, 30, 28), (0.45, 0.62, 0.30)),
    "left kidney": ((50, 30, 28), (0.45, 0.62, 0.70)),
    "gallbladder": ((35, 18, 18), (0.55, 0.40, 0.33)),
    "esophagus": ((100, 9, 9), (0.75, 0.55, 0.52)),
    "liver": ((80, 85, 100), (0.58, 0.45, 0.30)),
    "stomach": ((55, 45, 55), (0.60, 0.40, 0.65)),
    "aorta": ((110, 12, 12), (0.50, 0.60, 0.53)),
    "inferior vena cava": ((100, 12, 14), (0.50, 0.58, 0.44)),
    "portal and splenic veins": ((15, 8, 45), (0.52, 0.50, 0.50)),
    "pancreas": ((20, 15, 65), (0.46, 0.48, 0.55)),
    "right adrenal gland": ((18, 8, 8), (0.62, 0.63, 0.37)),
    "left adrenal gland": ((18, 8, 8), (0.62, 0.63, 0.63)),
}


@dataclass(frozen=True)
class Organ:
    label: int
    centre_mm: np.ndarray
    semi_axes_mm: np.ndarray
    phase: float


def parse_size(text: str) -> tuple[int, int, int]:
    parts = tuple(int(part) for part in text.lower().split("x"))
    if len(parts) != 3 or min(parts) < 8:
        raise argparse.ArgumentTypeError(f"--size wants ZxYxX with every side >= 8, got {text!r}")
    return parts  # type: ignore[return-value]


def paint_organ(volume: np.ndarray, organ: Organ, spacing: np.ndarray) -> None:
    """Write one wavy ellipsoid into `volume`, touching only its bounding box."""
    reach = organ.semi_axes_mm * 1.2
    low = np.maximum(((organ.centre_mm - reach) / spacing).astype(int), 0)
    high = np.minimum(((organ.centre_mm + reach) / spacing).astype(int) + 1, volume.shape)
    if np.any(high <= low):
        return
    axes = [(np.arange(lo, hi) * s - c) / r for lo, hi, s, c, r in
            zip(low, high, spacing, organ.centre_mm, organ.semi_axes_mm)]
    z, y, x = np.meshgrid(*axes, indexing="ij", sparse=True)
    wave = 0.06 * np.sin(5 * np.arctan2(y, x) + organ.phase) * np.cos(3 * z + organ.phase)
    inside = z**2 + y**2 + x**2 <= (1 + wave) ** 2
    box = volume[tuple(slice(lo, hi) for lo, hi in zip(low, high))]
    box[inside] = organ.label


def synthetic_case(shape: tuple[int, int, int], spacing: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    extent = np.asarray(shape) * spacing
    scale = min(1.0, float(extent[1]) / 410.0)  # keep organs inside small fields of view
    ref = np.zeros(shape, np.uint8)
    pred = np.zeros(shape, np.uint8)
    by_size = sorted(enumerate(ORGANS.values(), start=1), key=lambda item: -math.prod(item[1][0]))
    for label, (semi_axes, centre) in by_size:  # largest first, so small organs stay visible
        axes = np.asarray(semi_axes, float) * scale
        centre_mm = np.asarray(centre) * extent
        paint_organ(ref, Organ(label, centre_mm, axes, phase=0.0), spacing)
        jitter = Organ(
            label,
            centre_mm + rng.normal(0, 1.0, 3),
            axes * rng.uniform(0.93, 1.07, 3),
            phase=rng.uniform(0, 2 * math.pi),
        )
        paint_organ(pred, jitter, spacing)
    for _ in range(6):  # false-positive blobs far from their organ
        blob = Organ(int(rng.integers(1, len(ORGANS) + 1)), rng.uniform(0.1, 0.9, 3) * extent,
                     np.full(3, 3.0 * scale + 1.0), phase=0.0)
        paint_organ(pred, blob, spacing)
    return pred, ref


def monai_per_label(pred: np.ndarray, ref: np.ndarray, spacing, labels, tolerance_mm: float):
    """The release's evaluation: one-hot masks of one label at a time through MONAI."""
    import torch
    from monai.metrics import compute_dice, compute_hausdorff_distance, compute_surface_dice

    scores = {}
    for label in labels:
        one_hot_pred = torch.from_numpy(pred == label)[None, None].float()
        one_hot_ref = torch.from_numpy(ref == label)[None, None].float()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dice = compute_dice(one_hot_pred, one_hot_ref, include_background=True)
            nsd = compute_surface_dice(one_hot_pred, one_hot_ref, [tolerance_mm], include_background=True,
                                       spacing=list(spacing))
            hd95 = compute_hausdorff_distance(one_hot_pred, one_hot_ref, include_background=True, percentile=95,
                                              spacing=list(spacing))
        scores[label] = {"dice": float(dice), "nsd": float(nsd), "hd95": float(hd95)}
    return scores


def max_difference(ours, theirs) -> float:
    worst = 0.0
    for label, metrics in theirs.items():
        for metric, value in metrics.items():
            mine = ours[label][metric]
            if math.isnan(value) or math.isnan(mine):
                if not (math.isnan(value) and math.isnan(mine)):
                    return math.inf
                continue
            worst = max(worst, abs(mine - value))
    return worst


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=(48, 256, 256), help="ZxYxX voxels (default 48x256x256)")
    parser.add_argument("--spacing", type=float, nargs=3, default=(2.0, 0.8, 0.8), help="z y x in mm")
    parser.add_argument("--tolerance", type=float, default=1.0, help="NSD tolerance in mm")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="label threads to time")
    parser.add_argument("--repeats", type=int, default=3, help="best-of repeats for evaluate_case")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch
    from rich.console import Console
    from rich.table import Table

    from meddinov3.evaluation import evaluate_case

    torch.set_num_threads(1)  # same budget as our single-threaded run
    spacing = np.asarray(args.spacing, float)
    generation_s, (pred, ref) = timed(synthetic_case, args.size, spacing, args.seed)
    labels = list(range(1, len(ORGANS) + 1))
    monai_s, theirs = timed(monai_per_label, pred, ref, tuple(args.spacing), labels, args.tolerance)

    table = Table(title=f"{'x'.join(map(str, args.size))} voxels, {len(labels)} organs, spacing "
                        f"{tuple(args.spacing)} mm, NSD at {args.tolerance:g} mm (case built in {generation_s:.1f} s)")
    for column in ("implementation", "seconds", "speed-up", "max |difference|"):
        table.add_column(column, justify="left" if column == "implementation" else "right")
    table.add_row("MONAI per label (release)", f"{monai_s:.2f}", "1.0x", "-")
    for threads in args.threads:
        best, ours = math.inf, None
        for _ in range(args.repeats):
            seconds, ours = timed(evaluate_case, pred, ref, tuple(args.spacing), labels, args.tolerance, threads)
            best = min(best, seconds)
        table.add_row(f"meddinov3 evaluate_case, {threads} thread(s)", f"{best:.2f}", f"{monai_s / best:.1f}x",
                      f"{max_difference(ours, theirs):.2e}")
    Console().print(table)
    print(f"CPU cores visible: {os.cpu_count()}")


if __name__ == "__main__":
    main()
