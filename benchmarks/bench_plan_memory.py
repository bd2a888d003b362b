"""What `meddinov3 plan --gpu-memory` costs at 896: wall time and peak memory, and its estimates.

    python benchmarks/bench_plan_memory.py              # 2d_896 on a small synthetic CT dataset

Runs the command as a user does (its own process: nnU-Net fingerprint, plans, the ViT-B/16
memory estimate, preprocessing of 2d and 2d_896) and reports its wall time and the peak resident
memory of that process tree (the largest single process, from getrusage). The goal (issue 12):
under a minute and 4 GiB, where the earlier estimate ran a forward pass at 896 (27 minutes,
killed at 21 GB). The second table is the estimate itself, per GPU size, as `plan` prints it.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GIB = 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=896)
    parser.add_argument("--gpu-memory", type=float, nargs="+", default=[24, 40, 80, 141])
    args = parser.parse_args()

    from meddinov3.synth.toy_dataset import LABELS, SyntheticDatasetSpec, write_synthetic_dataset

    spec = SyntheticDatasetSpec(dataset_id=989, num_training=2, num_test=0)
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ)
        for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
            (Path(tmp) / name).mkdir()
            env[name] = str(Path(tmp) / name)
        write_synthetic_dataset(Path(tmp) / "nnUNet_raw", spec)
        command = [sys.executable, "-m", "meddinov3.cli", "plan", str(spec.dataset_id), "--size", str(args.size),
                   "--gpu-memory", str(args.gpu_memory[0]), "-j", "1", "--no-verify"]
        start = time.perf_counter()
        result = subprocess.run(command, env=env, capture_output=True, encoding="utf-8", errors="replace")
        seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"meddinov3 plan failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / GIB
    line = next(line for line in result.stdout.splitlines() if line.startswith(f"2d_{args.size}: batch size"))
    print(f"# meddinov3 plan --size {args.size} --gpu-memory {args.gpu_memory[0]:g}, {os.cpu_count()} CPUs")
    print("| wall time s | peak RSS GiB | plan's line |")
    print("|---:|---:|---|")
    print(f"| {seconds:.1f} | {peak_gib:.2f} | {line} |")

    from meddinov3.nnunet.memory import paper_network_estimate

    start = time.perf_counter()
    estimate = paper_network_estimate(args.size, len(LABELS), 1)
    seconds = time.perf_counter() - start
    print(f"\n# estimate alone: {seconds:.1f} s; multi-scale ViT-B/16 at {args.size}, bf16, AdamW")
    print("| GPU GiB | largest batch | estimated peak GiB at that batch |")
    print("|---:|---:|---:|")
    for gib in args.gpu_memory:
        batch = estimate.largest_batch(gib)
        print(f"| {gib:g} | {batch} | {estimate.total_bytes(batch) / GIB:.1f} |")


if __name__ == "__main__":
    main()
