"""`meddinov3 probe` throughput: feature extraction, head training and prediction, ViT-B/16.

    python benchmarks/bench_probe.py                                  # CPU (+ CUDA if present), 224 and 896
    python benchmarks/bench_probe.py --sizes 224 --slices 8 --steps 5 # a quick CPU look

Feature extraction is the probe's own path (`meddinov3.probe.features.extract`: resize from the
native 512 x 512 slice, CT normalisation, frozen forward, float16 features back on the CPU), on
the bundled real CT slice; head training is the probe's AdamW step on batches of cached features
(8 classes, logits upsampled to the slice size); prediction upsamples logits to 512 x 512.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from meddinov3.backbone import build_backbone
from meddinov3.probe.classifier import train_head
from meddinov3.probe.config import ProbeConfig
from meddinov3.probe.features import extract, feature_blocks
from meddinov3.probe.scoring import predict_volume
from meddinov3.viz.ct_slice import read_ct_slice

NATIVE = 512
CLASSES = 8


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def native_slices(count: int) -> np.ndarray:
    """`count` copies of the bundled CT slice at 512 x 512, each shifted so no two are identical."""
    hu = torch.from_numpy(read_ct_slice())[None, None]
    hu = F.interpolate(hu, size=(NATIVE, NATIVE), mode="bilinear", align_corners=False)[0, 0].numpy()
    return np.stack([np.roll(hu, 3 * i, axis=1) for i in range(count)])


def extraction_rate(model, hu: np.ndarray, size: int, layers: str, device: torch.device, batch: int) -> tuple[float, np.ndarray]:
    blocks = feature_blocks(model, layers)
    extract(model, hu[:batch], size, blocks, device, batch)  # warm-up
    synchronize(device)
    start = time.perf_counter()
    features = extract(model, hu, size, blocks, device, batch)
    synchronize(device)
    return len(hu) / (time.perf_counter() - start), features


def head_rates(features: np.ndarray, size: int, steps: int, device: torch.device) -> tuple[float, float]:
    """(training steps/s at batch 16, predicted slices/s at 512 x 512) of the linear head."""
    rng = np.random.default_rng(0)
    targets = rng.integers(0, CLASSES, (len(features), size, size), dtype=np.uint8)
    config = ProbeConfig(size=size, steps=steps)
    start = time.perf_counter()
    head, _ = train_head([features], [targets], CLASSES, config, device)
    synchronize(device)
    train = steps / (time.perf_counter() - start)
    start = time.perf_counter()
    predict_volume(head, features, (NATIVE, NATIVE), config.extract_batch_size)
    synchronize(device)
    return train, len(features) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="vitb16")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 896])
    parser.add_argument("--layers", nargs="+", default=["last", "multiscale"], choices=["last", "multiscale"])
    parser.add_argument("--slices", type=int, default=32, help="slices per measurement")
    parser.add_argument("--batch", type=int, default=8, help="slices per backbone forward pass")
    parser.add_argument("--steps", type=int, default=20, help="head training steps measured")
    default_devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    parser.add_argument("--devices", nargs="+", default=default_devices)
    args = parser.parse_args()

    torch.manual_seed(0)
    hu = native_slices(args.slices)
    print(f"# probe throughput, {args.preset}, {args.slices} slices of {NATIVE}x{NATIVE}, batch {args.batch}, "
          f"torch {torch.__version__}")
    print("| device | size | layers | feature extraction slices/s | head training steps/s (batch 16) | prediction slices/s |")
    print("|---|---:|---|---:|---:|---:|")
    for name in args.devices:
        device = torch.device(name)
        where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU x{torch.get_num_threads()} threads"
        model = build_backbone(args.preset).to(device).eval()
        for size in args.sizes:
            for layers in args.layers:
                rate, features = extraction_rate(model, hu, size, layers, device, args.batch)
                train, predict = head_rates(features, size, args.steps, device)
                print(f"| {where} | {size} | {layers} | {rate:.2f} | {train:.2f} | {predict:.2f} |", flush=True)


if __name__ == "__main__":
    main()
