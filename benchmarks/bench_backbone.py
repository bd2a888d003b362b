"""Backbone forward throughput and peak memory: ViT-B/16 at 224, 512 and 896, fp32 and bf16.

    python benchmarks/bench_backbone.py                      # CPU, all three sizes, batch 1
    python benchmarks/bench_backbone.py --device cuda --batch 16 --compile

Each configuration runs in a fresh process so its peak memory is its own (CPU: peak resident
set size; GPU: torch.cuda.max_memory_allocated).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time

import torch


def _measure(preset: str, size: int, dtype: str, batch: int, iters: int, device: str, compile_: bool, queue) -> None:
    from meddinov3.backbone import build_backbone

    torch.manual_seed(0)
    model = build_backbone(preset).to(device).eval()
    if compile_:
        model = torch.compile(model)
    x = torch.randn(batch, 3, size, size, device=device)
    autocast = torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=dtype == "bf16")

    def step():
        with torch.inference_mode(), autocast:
            model.forward_features(x)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    step()  # warm-up (and compilation)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    elapsed = time.perf_counter() - start
    if device.startswith("cuda"):
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put((batch * iters / elapsed, peak_mib))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="vitb16")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 512, 896])
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true", help="torch.compile the backbone")
    args = parser.parse_args()

    ctx = mp.get_context("spawn")
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU x{torch.get_num_threads()} threads"
    memory = "peak GPU alloc MiB" if args.device.startswith("cuda") else "peak RSS MiB"
    print(f"# {args.preset} forward_features, batch {args.batch}, {args.iters} iters, {name}, torch {torch.__version__}")
    print(f"| size | dtype | images/s | ms/image | {memory} |")
    print("|---:|---|---:|---:|---:|")
    for size in args.sizes:
        for dtype in args.dtypes:
            queue = ctx.Queue()
            proc = ctx.Process(
                target=_measure,
                args=(args.preset, size, dtype, args.batch, args.iters, args.device, args.compile, queue),
            )
            proc.start()
            proc.join()
            if proc.exitcode != 0:
                print(f"| {size} | {dtype} | failed (exit {proc.exitcode}) | | |")
                continue
            rate, peak = queue.get()
            print(f"| {size} | {dtype} | {rate:.2f} | {1000 / rate:.0f} | {peak:.0f} |", flush=True)


if __name__ == "__main__":
    main()
