"""Where the fine-tuning step's time goes: PyTorch's profiler over the trainer's real train_step.

    python benchmarks/profile_train_step.py            # ViT-B/16 multi-scale at 896, batch 12, bf16, on CUDA
    python benchmarks/profile_train_step.py --small    # tiny ViT at 96, batch 2, any machine

Prints the device time per kernel family (attention, matrix products, normalisation, element-wise,
copies and casts, ...) and the most expensive operators, for the eager step `meddinov3 train`
runs (nnU-Net's train_step, the recipe's optimiser, autocast). gpu_check.py gives the rate and
MFU; this gives the reason behind them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))
from bench_segmentation import TINY, network_spec, synchronize  # noqa: E402

# Kernel or operator name fragments -> family, first match wins (lower-case).
FAMILIES = (
    ("attention", ("flash", "attention", "fmha", "sdpa", "efficient_attention")),
    ("matrix products", ("gemm", "matmul", "mm", "addmm", "linear", "cutlass", "sm90_xmma", "nvjet")),
    ("convolution", ("conv", "cudnn", "winograd", "implicit_gemm", "dgrad", "wgrad")),
    ("normalisation", ("layer_norm", "layernorm", "norm")),
    ("copies and casts", ("copy", "cast", "to_copy", "cat", "contiguous", "memcpy", "memset", "fill")),
    ("optimiser", ("foreach", "multi_tensor", "adam", "sgd")),
    ("element-wise", ("elementwise", "vectorized", "unrolled", "reduce", "gelu", "mul", "add", "softmax")),
)


def family(name: str) -> str:
    lower = name.lower()
    return next((label for label, keys in FAMILIES if any(key in lower for key in keys)), "other")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="tiny ViT at 96, batch 2 (machines without a GPU)")
    parser.add_argument("--precision", default="bf16", choices=("bf16", "fp16", "fp32"))
    parser.add_argument("--side", type=int, default=None, help="patch side (default 896, or 96 with --small)")
    parser.add_argument("--batch", type=int, default=None, help="batch (default 12, or 2 with --small)")
    parser.add_argument("--top", type=int, default=15, help="operators listed")
    args = parser.parse_args()

    from meddinov3.nnunet.standalone import standalone_trainer, synthetic_batch, use_nnunet_folders

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    side = args.side or (96 if args.small else 896)
    batch_size = args.batch or (2 if args.small else 12)
    spec = network_spec("meddinov3_vitb16", True, args.precision, **(TINY if args.small else {}))
    use_nnunet_folders(tempfile.mkdtemp(prefix="meddinov3_profile_"))
    with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net's banners
        trainer = standalone_trainer(spec, (side, side), 16, batch_size, device, compile_network=False)
    batch = synthetic_batch(trainer)
    for _ in range(3):  # cuDNN and allocator warm-up
        trainer.train_step(batch)
    synchronize(device)

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    steps = 2
    with profile(activities=activities) as prof:
        for _ in range(steps):
            trainer.train_step(batch)
        synchronize(device)

    events = prof.key_averages()
    on_device = device.type == "cuda"
    # On CUDA the kernels themselves (device self time); on a CPU the operators' own time.
    time_of = (lambda e: e.self_device_time_total) if on_device else (lambda e: e.self_cpu_time_total)
    kernels = [e for e in events if time_of(e) > 0 and (not on_device or e.device_type.name == "CUDA")]
    total = sum(time_of(e) for e in kernels)
    by_family: dict[str, float] = defaultdict(float)
    for event in kernels:
        by_family[family(event.key)] += time_of(event)

    where = "device (CUDA kernels)" if on_device else "CPU (operators' self time)"
    print(f"# {spec.method}, ViT-{'tiny' if args.small else 'B/16'} multi-scale, {side}x{side}, batch {batch_size}, {args.precision}, {device.type}: "
          f"{total / 1e3 / steps:.1f} ms of {where} per step")
    print("| family | ms / step | share |")
    print("|---|---:|---:|")
    for label, micros in sorted(by_family.items(), key=lambda item: -item[1]):
        print(f"| {label} | {micros / 1e3 / steps:.1f} | {100 * micros / total:.1f}% |")
    print()
    print("| operator or kernel | family | calls / step | ms / step | share |")
    print("|---|---|---:|---:|---:|")
    for event in sorted(kernels, key=time_of, reverse=True)[: args.top]:
        print(f"| {event.key[:90]} | {family(event.key)} | {event.count // steps} | "
              f"{time_of(event) / 1e3 / steps:.2f} | {100 * time_of(event) / total:.1f}% |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
