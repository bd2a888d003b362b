"""Training-step throughput and peak memory of the MedDINOv3 networks, as `meddinov3 train` runs them.

    python benchmarks/bench_segmentation.py                 # CPU: tiny ViT at 64 and 128, batch 2
    python benchmarks/bench_segmentation.py --device cuda   # GPU: ViT-B/16 at 640 and 896, batch 12

A step is the trainer's own `train_step` (nnU-Net's trainer with the paper's recipe): the
precision `meddinov3 train` would use (bf16 autocast on GPUs that have it, fp16 with nnU-Net's
gradient scaler, fp32 on CPUs), nnU-Net's Dice + CE loss, clipping at 12, AdamW with the
encoder/decoder groups, and torch.compile where nnU-Net compiles (CUDA). Batches are synthetic
and built before timing (data loading and augmentation are nnU-Net's, the same for every
network). Batch 12 is nnU-Net's usual 2D batch on abdominal CT, which 2d_896 inherits.
Each configuration runs in a fresh process. Peak memory: torch.cuda.max_memory_allocated on a
GPU; PyTorch's memory tracker over a training step on a CPU. "estimate" is what `meddinov3 plan
--gpu-memory` plans with (nnunet/memory.py); "saved/slice" is what autograd keeps for the
backward pass per slice (saved-tensor hooks, bf16). Rates are the median over timed steps.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import multiprocessing as mp
import statistics
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache

import torch

TINY = {"embed_dim": 48, "num_heads": 2, "depth": 4}
MIB = 2**20


@dataclass
class StepMeasurement:
    seconds: float  # median seconds per step
    images_per_s: float
    flops_per_step: int  # model FLOPs of one forward + backward pass (FlopCounterMode)
    peak_bytes: int | None
    estimate_bytes: float
    warmup_seconds: float  # includes torch.compile's compilation
    output_dtype: torch.dtype
    precision: str
    compiled: bool


def network_spec(preset: str, multiscale: bool, precision: str | None, **backbone_overrides):
    """The spec `meddinov3 train` records for a multi- or single-scale ViT method."""
    from meddinov3.backbone import preset_config
    from meddinov3.nnunet.methods import get_method
    from meddinov3.nnunet.spec import NetworkSpec
    from meddinov3.segmentation import default_interaction_layers

    config = preset_config(preset, **get_method("meddinov3").recipe.backbone, **backbone_overrides)
    layers = default_interaction_layers(config.depth) if multiscale else [config.depth - 1]
    return NetworkSpec("meddinov3" if multiscale else "scratch", config.to_dict(), multiscale, layers, precision=precision)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_flops(network: torch.nn.Module, data: torch.Tensor, precision: str) -> int:
    """FLOPs of one forward and backward pass of `network` (eager), counted by FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    from meddinov3.precision import autocast

    with FlopCounterMode(display=False) as counter:
        with autocast(precision, data.device):
            output = network(data)
        output.float().sum().backward()
    network.zero_grad(set_to_none=True)
    return counter.get_total_flops()


@lru_cache(maxsize=4)
def memory_model(spec_json: str, num_classes: int, precision: str):
    """The plan's memory model of a network (measured on the CPU; fp16 stores what bf16 does, and
    CPUs run fp16 slowly)."""
    from meddinov3.nnunet.memory import measure_memory_model
    from meddinov3.nnunet.network import build_network
    from meddinov3.nnunet.spec import NetworkSpec

    network = build_network(NetworkSpec.from_dict(json.loads(spec_json)), 1, num_classes)
    return measure_memory_model(network, num_classes, "fp32" if precision == "fp32" else "bf16")


def measure_train_steps(
    spec, side: int, num_classes: int, batch_size: int, device: torch.device, compile_network: bool | None,
    steps: int, warmup: int, track_cpu_memory: bool = True,
) -> StepMeasurement:
    """Time the trainer's real train_step; raises if a loss is not finite."""
    from meddinov3.nnunet.memory import tracked_training_peak
    from meddinov3.nnunet.network import unwrap
    from meddinov3.nnunet.standalone import standalone_trainer, synthetic_batch, use_nnunet_folders

    use_nnunet_folders(tempfile.mkdtemp(prefix="meddinov3_bench_"))
    torch.manual_seed(0)
    trainer = standalone_trainer(spec, (side, side), num_classes, batch_size, device, compile_network)
    network = unwrap(trainer.network)
    if compile_network and trainer.network is network:  # nnU-Net compiles on CUDA only; do what it does there
        trainer.network = torch.compile(trainer.network)
    estimate = memory_model(json.dumps(spec.to_dict()), num_classes, trainer.precision).at((side, side))
    dtypes: list[torch.dtype] = []
    network.register_forward_hook(lambda module, args, output: dtypes.append(output.dtype))
    batch = synthetic_batch(trainer)
    if device.type == "cuda":
        batch = {key: value.pin_memory() for key, value in batch.items()}
    flops = model_flops(network, batch["data"].to(device), trainer.precision)

    def step() -> float:
        start = time.perf_counter()
        loss = float(trainer.train_step(batch)["loss"])
        synchronize(device)
        if not math.isfinite(loss):
            raise FloatingPointError(f"training loss {loss} at {trainer.precision}")
        return time.perf_counter() - start

    start = time.perf_counter()
    for _ in range(warmup):
        step()
    warmup_seconds = time.perf_counter() - start
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = statistics.median(step() for _ in range(steps))
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = tracked_training_peak(trainer, batch) if track_cpu_memory else None
    compiled = trainer.network is not network
    return StepMeasurement(seconds, batch_size / seconds, flops, peak, estimate.total_bytes(batch_size), warmup_seconds,
                           dtypes[-1], trainer.precision, compiled)


def _measure(args: argparse.Namespace, size: int, multiscale: bool, queue) -> None:
    from meddinov3.nnunet.memory import saved_activation_bytes
    from meddinov3.nnunet.network import build_network

    device = torch.device(args.device)
    spec = network_spec(args.preset, multiscale, args.precision, **(TINY if args.tiny else {}))
    with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net's banner and log lines
        result = measure_train_steps(spec, size, args.classes, args.batch, device, args.compile, args.steps, args.warmup)
    saved = saved_activation_bytes(build_network(spec, 1, args.classes).train(), torch.randn(1, 1, size, size))
    queue.put((result, saved))


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
    parser.add_argument("--precision", choices=["auto", "bf16", "fp16", "fp32"], default="auto")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the network (default: nnU-Net's choice, on for CUDA)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    on_gpu = args.device.startswith("cuda")
    args.tiny = (not on_gpu) if args.tiny is None else args.tiny
    args.sizes = args.sizes or ([640, 896] if on_gpu else [64, 128])
    args.batch = args.batch or (12 if on_gpu else 2)

    ctx = mp.get_context("spawn")
    name = torch.cuda.get_device_name() if on_gpu else f"CPU x{torch.get_num_threads()} threads"
    memory = "peak GPU alloc MiB" if on_gpu else "tracked peak MiB"
    vit = f"{args.preset}{' (tiny: ' + str(TINY) + ')' if args.tiny else ''}"
    print(f"# trainer train_step, {vit}, batch {args.batch}, {name}, torch {torch.__version__}")
    print(f"| size | decoder | precision | compiled | images/s | s/step | TFLOP/step | {memory} | estimate MiB "
          f"| saved/slice MiB |")
    print("|---:|---|---|---|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        for multiscale in (True, False):
            queue = ctx.Queue()
            proc = ctx.Process(target=_measure, args=(args, size, multiscale, queue))
            proc.start()
            proc.join()
            label = "multi-scale" if multiscale else "single-scale"
            if proc.exitcode != 0:
                print(f"| {size} | {label} | failed (exit {proc.exitcode}) | | | | | | | |", flush=True)
                continue
            r, saved = queue.get()
            peak = f"{r.peak_bytes / MIB:.0f}" if r.peak_bytes is not None else "-"
            print(f"| {size} | {label} | {r.precision} | {'yes' if r.compiled else 'no'} | {r.images_per_s:.2f} "
                  f"| {r.seconds:.3f} | {r.flops_per_step / 1e12:.3g} | {peak} | {r.estimate_bytes / MIB:.0f} "
                  f"| {saved / MIB:.1f} |", flush=True)


if __name__ == "__main__":
    main()
