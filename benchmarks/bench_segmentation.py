"""Segmentation training-step throughput and peak memory of the MedDINOv3 networks.

    python benchmarks/bench_segmentation.py                 # CPU: tiny ViT at 64 and 128, batch 2
    python benchmarks/bench_segmentation.py --device cuda   # GPU: ViT-B/16 at 640 and 896, batch 12

One step is what the nnU-Net trainer does per iteration: forward under autocast, nnU-Net's
Dice + CE loss, backward, gradient clipping at 12, AdamW step with the encoder/decoder groups.
Data loading and augmentation are left out (nnU-Net's, the same for every network). Batch 12 is
nnU-Net's usual 2D batch size on abdominal CT, which the release's 2d_896 configuration inherits.
Each configuration runs in a fresh process so its peak memory is its own (CPU: peak resident set
size of the process; GPU: torch.cuda.max_memory_allocated). Rates are the median over timed steps.
The "estimate" column is what `meddinov3 plan --gpu-memory` plans with (nnunet/memory.py), for
comparison with the measured peak (on the CPU the peak also holds the process's own ~0.4 GiB).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import time

import torch

TINY = {"embed_dim": 48, "num_heads": 2, "depth": 4}


def _network(preset: str, tiny: bool, multiscale: bool, num_classes: int):
    from meddinov3.backbone import preset_config
    from meddinov3.nnunet.methods import get_method
    from meddinov3.nnunet.network import build_network
    from meddinov3.nnunet.spec import NetworkSpec, default_interaction_layers

    config = preset_config(preset, **get_method("meddinov3").recipe.backbone, **(TINY if tiny else {}))
    layers = default_interaction_layers(config.depth) if multiscale else [config.depth - 1]
    spec = NetworkSpec("meddinov3", config.to_dict(), multiscale, layers)
    return build_network(spec, num_input_channels=1, num_output_channels=num_classes)


def _measure(args: argparse.Namespace, size: int, multiscale: bool, queue) -> None:
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    from meddinov3.nnunet.memory import estimate_training_memory
    from meddinov3.nnunet.methods import get_method
    from meddinov3.nnunet.optim import build_optimizer

    torch.manual_seed(0)
    device = torch.device(args.device)
    network = _network(args.preset, args.tiny, multiscale, args.classes)
    estimate_mib = estimate_training_memory(network, (size, size), 1).total_bytes(args.batch) / 2**20
    network = network.to(device).train()
    optimizer = build_optimizer(network, get_method("meddinov3").recipe, fused=device.type == "cuda")
    loss_fn = DC_and_CE_loss({"batch_dice": True, "smooth": 1e-5, "do_bg": False, "ddp": False}, {},
                             weight_ce=1, weight_dice=1, ignore_label=None, dice_class=MemoryEfficientSoftDiceLoss)
    x = torch.randn(args.batch, 1, size, size, device=device)
    target = torch.randint(0, args.classes, (args.batch, 1, size, size), device=device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)

    def step() -> float:
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = loss_fn(network(x), target)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 12)
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds = statistics.median(step() for _ in range(args.steps))
    if device.type == "cuda":
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put((args.batch / seconds, seconds, peak_mib, estimate_mib))


def main() -> None:
    gpu = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if gpu else "cpu")
    parser.add_argument("--preset", default="meddinov3_vitb16")
    parser.add_argument("--tiny", action=argparse.BooleanOptionalAction, default=None,
                        help=f"shrink the ViT to {TINY} (default: on CPU)")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="default: 640 896 on GPU, 64 128 on CPU")
    parser.add_argument("--batch", type=int, default=None, help="default: 12 on GPU, 2 on CPU")
    parser.add_argument("--classes", type=int, default=16, help="output channels (AMOS22: 15 organs + background)")
    parser.add_argument("--amp", choices=["bf16", "fp16", "none"], default="bf16")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    on_gpu = args.device.startswith("cuda")
    args.tiny = (not on_gpu) if args.tiny is None else args.tiny
    args.sizes = args.sizes or ([640, 896] if on_gpu else [64, 128])
    args.batch = args.batch or (12 if on_gpu else 2)

    ctx = mp.get_context("spawn")
    name = torch.cuda.get_device_name() if on_gpu else f"CPU x{torch.get_num_threads()} threads"
    memory = "peak GPU alloc MiB" if on_gpu else "peak RSS MiB"
    vit = f"{args.preset}{' (tiny: ' + str(TINY) + ')' if args.tiny else ''}"
    print(f"# training step, {vit}, batch {args.batch}, {args.amp} autocast, {name}, torch {torch.__version__}")
    print(f"| size | decoder | images/s | s/step | {memory} | estimate MiB |")
    print("|---:|---|---:|---:|---:|---:|")
    for size in args.sizes:
        for multiscale in (True, False):
            queue = ctx.Queue()
            proc = ctx.Process(target=_measure, args=(args, size, multiscale, queue))
            proc.start()
            proc.join()
            label = "multi-scale" if multiscale else "single-scale"
            if proc.exitcode != 0:
                print(f"| {size} | {label} | failed (exit {proc.exitcode}) | | | |", flush=True)
                continue
            rate, seconds, peak, estimate = queue.get()
            print(f"| {size} | {label} | {rate:.2f} | {seconds:.3f} | {peak:.0f} | {estimate:.0f} |", flush=True)


if __name__ == "__main__":
    main()
