"""Pretraining throughput and peak memory: full iterations (teacher, student, Gram teacher, AdamW, EMA).

    python benchmarks/bench_pretrain.py                                   # CPU: tiny ViT, stages 1-3
    python benchmarks/bench_pretrain.py --model vitb16 --batch 32         # GPU: ViT-B/16, paper crops, bf16

Paper crops: 2 global 256 + 8 local 112 (stage 1), + Gram teacher at 512 (stage 2), mixed global
512-768 / local 112-336 with the Gram teacher at 1.5x (stage 3); heads with 65536 prototypes.
Batches come from the real multi-crop pipeline (synthetic CT) and are built before timing, so
"it/s" measures the model; "data samples/s" is the multi-crop pipeline on one CPU worker.
Each configuration runs in a fresh process so its peak memory is its own.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import tempfile
import time

import torch

TINY = [
    "model.arch=vits16",
    "model.arch_overrides={embed_dim: 48, num_heads: 2, depth: 2}",
    "model.head_prototypes=128",
    "model.head_hidden_dim=64",
    "model.head_bottleneck_dim=32",
    "crops.n_local=4",
]
TINY_CROPS = {
    1: ["crops.global_sizes=[64]", "crops.local_sizes=[32]"],
    2: ["crops.global_sizes=[64]", "crops.local_sizes=[32]", "crops.gram_sizes=[128]"],
    3: ["crops.global_sizes=[96, 128]", "crops.local_sizes=[32, 48]", "crops.gram_sizes=[144, 192]", "crops.size_probs=null"],
}


def pretrain_config(model: str, stage: int, batch: int, device: str, output_dir: str):
    """The stage preset with synthetic CT slices, one process, `batch` images per iteration."""
    from meddinov3.pretrain.config import load_config

    overrides = [
        "model.init=random",
        "gram.teacher=null",  # the Gram teacher is the start's teacher: no stage-1 snapshot needed
        "data.corpus=null",
        "data.synthetic_slices=64",
        "data.num_workers=0",
        f"optim.global_batch_size={batch}",
        f"run.device={device}",
        f"run.output_dir={output_dir}",
    ]
    if model == "tiny":
        overrides += TINY + TINY_CROPS[stage]
    else:
        overrides += [f"model.arch={model}"]
    return load_config(f"stage{stage}", overrides)


def multicrop_batches(config, patch_size: int, batch: int, count: int) -> list:
    """`count` batches from the real multi-crop pipeline, built up front."""
    from meddinov3.pretrain.collate import collate_multicrop
    from meddinov3.pretrain.data import PretrainDataset, ShardedBatchSampler, build_corpus

    dataset = PretrainDataset(build_corpus(config), config, patch_size)
    sampler = ShardedBatchSampler(len(dataset), batch, 0, 1, 0, 0, count)
    return [collate_multicrop([dataset[key] for key in keys]) for keys in sampler]


def _measure(model: str, stage: int, batch: int, iters: int, warmup: int, device: str, queue) -> None:
    from meddinov3.pretrain.pretrainer import Pretrainer

    with tempfile.TemporaryDirectory() as tmp:
        config = pretrain_config(model, stage, batch, device, tmp)
        trainer = Pretrainer(config, torch.device(device))
        start = time.perf_counter()
        batches = multicrop_batches(config, trainer.patch_size, batch, warmup + iters)
        data_rate = batch * len(batches) / (time.perf_counter() - start)

        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        for b in batches[:warmup]:
            trainer.step(b)
        sync()
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for b in batches[warmup:]:
            trainer.step(b)
        sync()
        elapsed = time.perf_counter() - start
        if device.startswith("cuda"):
            peak_mib = torch.cuda.max_memory_allocated() / 2**20
        else:
            peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        params = sum(p.numel() for p in trainer.student.parameters()) / 1e6
        queue.put((iters / elapsed, batch * iters / elapsed, data_rate, peak_mib, params, trainer.precision))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    on_gpu = torch.cuda.is_available()
    parser.add_argument("--model", default="vitb16" if on_gpu else "tiny", help="'tiny' or a backbone preset (vitb16)")
    parser.add_argument("--stages", type=int, nargs="+", default=[1, 2, 3], choices=[1, 2, 3])
    parser.add_argument("--batch", type=int, default=32 if on_gpu else 8, help="images per iteration (one process)")
    parser.add_argument("--iters", type=int, default=10 if on_gpu else 5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if on_gpu else "cpu")
    args = parser.parse_args()

    ctx = mp.get_context("spawn")
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU x{torch.get_num_threads()} threads"
    memory = "peak GPU alloc MiB" if args.device.startswith("cuda") else "peak RSS MiB"
    print(f"# pretraining step, model {args.model}, batch {args.batch}, {args.iters} iters, {name}, torch {torch.__version__}")
    print(f"| stage | student params (M) | precision | it/s | images/s | data samples/s (1 worker) | {memory} |")
    print("|---:|---:|---|---:|---:|---:|---:|")
    for stage in args.stages:
        queue = ctx.Queue()
        proc = ctx.Process(target=_measure, args=(args.model, stage, args.batch, args.iters, args.warmup, args.device, queue))
        proc.start()
        proc.join()
        if proc.exitcode != 0:
            print(f"| {stage} | failed (exit {proc.exitcode}) | | | | | |", flush=True)
            continue
        its, images, data_rate, peak, params, precision = queue.get()
        print(f"| {stage} | {params:.1f} | {precision} | {its:.3f} | {images:.1f} | {data_rate:.1f} | {peak:.0f} |", flush=True)


if __name__ == "__main__":
    main()
