"""Cost of the benchmark-case fingerprint (`curate --exclude`, `curate --check`), and what it catches.

Input: one synthetic abdominal CT (meddinov3.synth, realistic HU, texture and noise) of
--slices x --side x --side voxels, rounded to integer HU and written as int16 .nii.gz like public
datasets. Prints, per volume (one thread): reading it as curation does (decompression, checks,
LPS reorientation), computing its slice digests, and looking them up in an index holding
--index-volumes such volumes; then which copies of it the fingerprint recognises (same data in
other files: caught; near-duplicates: reported as what they are).

    python benchmarks/bench_fingerprint.py                          # 512 x 512 x 100
    python benchmarks/bench_fingerprint.py --slices 20 --side 128   # quick
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def write(path: Path, voxels: np.ndarray, spacing, direction=None) -> Path:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(voxels)
    image.SetSpacing(spacing)
    if direction is not None:
        image.SetDirection(direction)
    sitk.WriteImage(image, str(path), useCompression=True)
    return path


def digests_of(path: Path) -> list:
    from meddinov3.curate.fingerprint import slice_digests
    from meddinov3.curate.reading import read_image_volume
    from meddinov3.curate.sources import Source

    volume = read_image_volume(Source("image", str(path)))
    return slice_digests(volume.voxels)


def best_of(repeats: int, work) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - start)
    return best, result


def costs(path: Path, index_volumes: int, repeats: int) -> list[tuple[str, float]]:
    from meddinov3.curate.exclusion import ExclusionIndex
    from meddinov3.curate.fingerprint import slice_digests
    from meddinov3.curate.reading import read_image_volume
    from meddinov3.curate.sources import Source
    from meddinov3.curate.worker import single_threaded

    with single_threaded():
        read_s, volume = best_of(repeats, lambda: read_image_volume(Source("image", str(path))))
        digest_s, digests = best_of(repeats, lambda: slice_digests(volume.voxels))
        rng = np.random.default_rng(0)
        others = [[f"{v:016x}" for v in rng.integers(0, 2**63, len(digests))] for _ in range(index_volumes - 1)]
        entries = [{"case": f"c{k}", "file": f"c{k}", "digests": d} for k, d in enumerate([digests, *others])]
        build_s, index = best_of(1, lambda: ExclusionIndex([{"dataset": "D", "images": entries}]))
        match_s, match = best_of(repeats, lambda: index.match(digests))
    assert match is not None and match.identical
    return [
        ("read .nii.gz + checks + LPS orientation (curation reads it anyway)", read_s),
        ("slice digests (float32, blake2b per slice)", digest_s),
        (f"index of {index_volumes} such volumes: build (once per run)", build_s),
        ("look up one volume in that index", match_s),
    ]


def copies(folder: Path, voxels: np.ndarray, spacing) -> dict[str, Path]:
    """The volume again, as the same data (expected: caught) and as near-duplicates (expected: not)."""
    rng = np.random.default_rng(1)
    z = voxels.shape[0]
    return {
        "renamed (.nii.gz)": write(folder / "renamed.nii.gz", voxels, spacing),
        ".mha": write(folder / "copy.mha", voxels, spacing),
        ".nrrd": write(folder / "copy.nrrd", voxels, spacing),
        "int32": write(folder / "int32.nii.gz", voxels.astype(np.int32), spacing),
        "float32": write(folder / "float32.nii.gz", voxels.astype(np.float32), spacing),
        "uint16, HU + 2048": write(folder / "uint16.nii.gz", (voxels.astype(np.int32) + 2048).astype(np.uint16), spacing),
        "stored flipped (RAS)": write(folder / "ras.nii.gz", voxels[:, ::-1, ::-1].copy(), spacing, (-1, 0, 0, 0, -1, 0, 0, 0, 1)),
        "other spacing in header": write(folder / "spacing.nii.gz", voxels, tuple(s * 1.1 for s in spacing)),
        "slices cut to the middle half": write(folder / "zcrop.nii.gz", voxels[z // 4 : z - z // 4].copy(), spacing),
        "noise +-1 HU": write(folder / "noise.nii.gz", voxels + rng.integers(-1, 2, voxels.shape, dtype=np.int16), spacing),
        "in-plane crop, 8 px": write(folder / "crop.nii.gz", voxels[:, 8:-8, 8:-8].copy(), spacing),
        "every voxel + 1 HU": write(folder / "plus1.nii.gz", voxels + np.int16(1), spacing),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=100)
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--index-volumes", type=int, default=1000, help="volumes in the benchmark index")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from meddinov3.curate.exclusion import ExclusionIndex
    from meddinov3.synth.case import generate_case

    case = generate_case(seed=0, index=0, shape_zyx=(args.slices, args.side, args.side))
    voxels = np.clip(np.rint(case.image), -32768, 32767).astype(np.int16)
    with tempfile.TemporaryDirectory() as tmp:
        original = write(Path(tmp) / "case_0000.nii.gz", voxels, case.spacing_xyz)
        print(f"{args.slices} x {args.side} x {args.side} int16 CT, one thread\n")
        print(f"{'step':<70} {'ms':>8}")
        for name, seconds in costs(original, args.index_volumes, args.repeats):
            print(f"{name:<70} {1000 * seconds:>8.2f}")
        reference = digests_of(original)
        index = ExclusionIndex([{"dataset": "Bench", "images": [{"case": "case", "file": "case_0000.nii.gz",
                                                                  "digests": reference}]}])
        print(f"\n{'copy of the benchmark volume':<34} {'match':<44}")
        for name, path in copies(Path(tmp), voxels, case.spacing_xyz).items():
            match = index.match(digests_of(path))
            verdict = "not caught" if match is None else match.reason().removeprefix("benchmark case: ")
            print(f"{name:<34} {verdict}")


if __name__ == "__main__":
    main()
