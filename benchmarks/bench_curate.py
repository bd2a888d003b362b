"""Throughput of `meddinov3 curate` and what curating CT-3M (3,868,833 slices) costs.

Input: synthetic abdominal CT volumes (meddinov3.synth, realistic HU, texture and noise) of
--slices x --side x --side voxels at 0.6-0.9 mm, written as .nii.gz like public datasets.
Prints a per-stage breakdown (one thread), end-to-end slices/s for each --workers value, the
extrapolated cost for CT-3M, and storage with and without compression.

    python benchmarks/bench_curate.py                       # 4 volumes of 100 x 512 x 512
    python benchmarks/bench_curate.py --volumes 2 --slices 30 --side 256   # quick
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

CT3M_SLICES = 3_868_833
SLICE_BYTES = 256 * 256 * 2
ASSET = Path(__file__).resolve().parents[1] / "src/meddinov3/assets/ct_slice_1866889.npy"


def make_inputs(folder: Path, volumes: int, slices: int, side: int) -> float:
    """Write ``volumes`` .nii.gz files (one synthetic case, copied); returns generation seconds."""
    import SimpleITK as sitk

    from meddinov3.synth.case import generate_case

    start = time.perf_counter()
    case = generate_case(seed=0, index=0, shape_zyx=(slices, side, side))
    seconds = time.perf_counter() - start
    image = sitk.GetImageFromArray(case.image)
    image.SetSpacing(case.spacing_xyz)
    first = folder / "vol_000.nii.gz"
    sitk.WriteImage(image, str(first), useCompression=True)
    for n in range(1, volumes):
        shutil.copyfile(first, folder / f"vol_{n:03d}.nii.gz")
    return seconds


def stage_times(path: Path) -> dict[str, float]:
    """Seconds per stage for one volume, single-threaded."""
    from meddinov3.curate.config import CurateConfig
    from meddinov3.curate.fingerprint import slice_digests
    from meddinov3.curate.reading import read_volume
    from meddinov3.curate.screening import reject_reason
    from meddinov3.curate.slices import write_slices
    from meddinov3.curate.sources import Source
    from meddinov3.curate.worker import single_threaded

    config = CurateConfig()
    times = {}
    with single_threaded():
        start = time.perf_counter()
        volume = read_volume(Source("image", str(path)), config.size)
        times["read + orient"] = time.perf_counter() - start
        start = time.perf_counter()
        assert reject_reason(volume, True) is None
        times["HU screening"] = time.perf_counter() - start
        start = time.perf_counter()
        slice_digests(volume.voxels)
        times["slice digests (for --exclude/--check)"] = time.perf_counter() - start
        out = np.empty((volume.voxels.shape[0], config.size, config.size), np.int16)
        start = time.perf_counter()
        write_slices(volume.voxels, volume.spacing_xyz[:2], out, config.spacing_mm, config.size,
                     config.pad_value, config.chunk_slices)
        times["resample 0.45 mm + resize 256"] = time.perf_counter() - start
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            np.save(Path(tmp) / "shard.npy", out)
            times["write shard"] = time.perf_counter() - start
    return times


def end_to_end(inputs: Path, workers: int, scratch: Path) -> tuple[float, int]:
    from meddinov3.curate.runner import curate_paths

    out = scratch / f"corpus_w{workers}"
    start = time.perf_counter()
    summary = curate_paths([inputs], out, workers=workers)
    seconds = time.perf_counter() - start
    assert summary.count("failed") == 0 and summary.count("skipped") == 0
    return seconds, summary.slices("curated")


def pool_startup(workers: int) -> float:
    """Seconds to start ``workers`` spawned processes that import the curate worker."""
    import importlib
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    start = time.perf_counter()
    with ProcessPoolExecutor(workers, multiprocessing.get_context("spawn"),
                             initializer=importlib.import_module,
                             initargs=("meddinov3.curate.worker",)) as pool:
        for future in [pool.submit(os.getpid) for _ in range(workers)]:
            future.result()
    return time.perf_counter() - start


def compression(slices: np.ndarray) -> list[tuple[str, float, float]]:
    """(codec, size ratio, decode ms per slice) for int16 slices."""
    rows = []
    for level in (1, 6):
        blobs = [zlib.compress(s.tobytes(), level) for s in slices]
        start = time.perf_counter()
        for blob in blobs:
            zlib.decompress(blob)
        decode_ms = (time.perf_counter() - start) / len(blobs) * 1e3
        rows.append((f"zlib-{level}", slices.nbytes / sum(map(len, blobs)), decode_ms))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=4)
    parser.add_argument("--slices", type=int, default=100)
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        inputs = scratch / "inputs"
        inputs.mkdir()
        synth_s = make_inputs(inputs, args.volumes, args.slices, args.side)
        total = args.volumes * args.slices
        print(f"input: {args.volumes} x .nii.gz of {args.slices} x {args.side} x {args.side} "
              f"(synthetic CT, generated in {synth_s:.1f} s)\n")

        print("| stage (1 thread, one volume) | s | ms/slice |")
        print("|---|---|---|")
        for stage, seconds in stage_times(inputs / "vol_000.nii.gz").items():
            print(f"| {stage} | {seconds:.2f} | {seconds / args.slices * 1e3:.2f} |")

        print("\n| workers | slices | s | pool start-up s | slices/s | slices/s per worker, "
              "start-up excluded |")
        print("|---|---|---|---|---|---|")
        per_worker = []
        for workers in args.workers:
            seconds, slices = end_to_end(inputs, workers, scratch)
            assert slices == total
            startup = pool_startup(workers) if workers > 1 else 0.0
            per_worker.append(slices / max(seconds - startup, 1e-9) / workers)
            print(f"| {workers} | {slices} | {seconds:.1f} | {startup:.1f} | "
                  f"{slices / seconds:.1f} | {per_worker[-1]:.1f} |")

        from meddinov3.curate import SliceCorpus

        curated = SliceCorpus(scratch / f"corpus_w{args.workers[0]}")
        synthetic = np.stack([curated[i] for i in range(min(len(curated), 64))])

    rate = per_worker[0]
    core_hours = CT3M_SLICES / rate / 3600
    print(f"\nCT-3M ({CT3M_SLICES:,} slices) at {rate:.0f} slices/s per worker (the "
          "single-worker run; assumes linear scaling, i.e. storage keeps up):")
    print("| cores | hours |")
    print("|---|---|")
    for cores in (1, 8, 16, 64):
        print(f"| {cores} | {core_hours / cores:.1f} |")

    raw = CT3M_SLICES * SLICE_BYTES
    real = np.rint(np.load(ASSET)).astype(np.int16)[None]
    print(f"\nstorage, uncompressed int16: {raw / 2**30:.0f} GiB "
          f"({SLICE_BYTES // 1024} KiB per slice)")
    print("| codec | data | size ratio | GiB for CT-3M | decode ms/slice |")
    print("|---|---|---|---|---|")
    for name, data in (("real CT slice (bundled)", real), ("synthetic curated", synthetic)):
        for codec, ratio, decode_ms in compression(data):
            print(f"| {codec} | {name} | {ratio:.2f} | {raw / ratio / 2**30:.0f} | {decode_ms:.2f} |")


if __name__ == "__main__":
    main()
