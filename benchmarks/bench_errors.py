"""How fast a mistake is reported, and what OpenMP spinning costs nnU-Net's validation on busy cores.

1. Wall time of `meddinov3 predict` and `meddinov3 evaluate` on an input that does not exist,
   as a user runs them (a fresh process each, with a trained model folder given to predict):
   the commands check their paths before torch and nnU-Net load.
2. Wall time of `meddinov3 train --validation-only` (nnU-Net's final validation) on the
   end-to-end test dataset (tests/test_nnunet_end_to_end.py: 8 x 64 x 64 CT-like volumes, a
   tiny ViT at 2d_96), with OpenMP's default spin count (300,000, as before the CLI set one)
   and with the CLI's 10,000, beside `--busy` processes that keep cores busy as other jobs on a
   shared machine do.

The workspace (dataset, plans, one quick training) is built once into --workdir and reused.

    python benchmarks/bench_errors.py                 # ~3 minutes on 2 cores
    python benchmarks/bench_errors.py --busy 0        # the validation on otherwise idle cores
    PYTHONPATH=/other/checkout/src python benchmarks/bench_errors.py   # measure another version
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATASET_ID = 987
TINY_VIT = ["--backbone-set", "embed_dim=48", "--backbone-set", "num_heads=2", "--backbone-set", "depth=4"]
TRAINING = ["--method", "scratch", "--config", "2d_96", "--device", "cpu", "-j", "0", "--no-progress"]
OPENMP_DEFAULT_SPINS = "300000"


def cli(env: dict[str, str], *args: str, check: bool = True) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "meddinov3.cli", *args], env=env, capture_output=True,
                            encoding="utf-8", errors="replace")
    seconds = time.perf_counter() - start
    if check and result.returncode != 0:
        raise SystemExit(f"meddinov3 {' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return seconds, result


def workspace(root: Path) -> tuple[dict[str, str], Path]:
    """nnU-Net folders with the end-to-end test dataset, planned at 2d_96, trained for one epoch."""
    from meddinov3.synth.toy_dataset import SyntheticDatasetSpec, write_synthetic_dataset

    env = dict(os.environ)
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (root / name).mkdir(parents=True, exist_ok=True)
        env[name] = str(root / name)
    spec = SyntheticDatasetSpec(dataset_id=DATASET_ID, num_training=5, num_test=1)
    model = root / "nnUNet_results" / spec.folder_name / "ViTScratchTrainer__nnUNetPlans__2d_96"
    if not (model / "fold_0" / "checkpoint_final.pth").is_file():
        print("building the workspace (dataset, plan, one quick training) ...", flush=True)
        if not (root / "nnUNet_raw" / spec.folder_name).is_dir():
            write_synthetic_dataset(root / "nnUNet_raw", spec)
        cli(env, "plan", str(DATASET_ID), "--size", "96", "-j", "1", "--no-verify")
        cli(env, "train", str(DATASET_ID), *TRAINING, *TINY_VIT, "--epochs", "1", "--iterations-per-epoch", "3",
            "--val-iterations-per-epoch", "1", "--no-validate")
    return env, model


def median_wall(repeats: int, env: dict[str, str], *args: str) -> tuple[float, str]:
    times, last = [], None
    for _ in range(repeats):
        seconds, last = cli(env, *args, check=False)
        times.append(seconds)
    lines = [line for line in last.stderr.splitlines() if line.strip()]
    return statistics.median(times), (lines[-1] if lines else f"exit {last.returncode}")


def busy_processes(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def validation_seconds(env: dict[str, str], spins: str | None) -> float:
    env = dict(env)
    env.pop("GOMP_SPINCOUNT", None)
    if spins is not None:
        env["GOMP_SPINCOUNT"] = spins
    seconds, _ = cli(env, "train", str(DATASET_ID), *TRAINING, "--validation-only")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "meddinov3_bench_errors")
    parser.add_argument("--repeats", type=int, default=3, help="Runs per missing-input timing (median shown).")
    parser.add_argument("--busy", type=int, default=1, help="Busy-looping processes beside the validation.")
    parser.add_argument("--part", choices=("all", "errors", "validation"), default="all")
    args = parser.parse_args()

    env, model = workspace(args.workdir)
    if args.part in ("all", "errors"):
        missing_input_table(args.workdir, model, env, args.repeats)
    if args.part in ("all", "validation"):
        validation_table(env, args.busy)


def missing_input_table(workdir: Path, model: Path, env: dict[str, str], repeats: int) -> None:
    missing = workdir / "no_such_scan.nii.gz"
    rows = [
        ("predict, missing input", *median_wall(
            repeats, env, "predict", "-i", str(missing), "-o", str(workdir / "out"), "-m", str(model))),
        ("evaluate, missing folder", *median_wall(
            repeats, env, "evaluate", "--pred", str(workdir / "no_such_folder"), "--ref", str(workdir))),
    ]
    print(f"\n{'command':<28} {'wall s':>7}  message")
    for name, seconds, message in rows:
        print(f"{name:<28} {seconds:7.2f}  {message[:100]}")


def validation_table(env: dict[str, str], busy_count: int) -> None:
    print(f"\nnnU-Net validation (fold 0 of dataset {DATASET_ID}), {busy_count} busy process(es) beside it")
    print(f"{'GOMP_SPINCOUNT':<28} {'wall s':>7}")
    busy = busy_processes(busy_count)
    try:
        for label, spins in (("300000 (OpenMP default)", OPENMP_DEFAULT_SPINS), ("10000 (meddinov3 CLI)", None)):
            print(f"{label:<28} {validation_seconds(env, spins):7.1f}", flush=True)
    finally:
        for process in busy:
            process.kill()
            process.wait()


if __name__ == "__main__":
    main()
