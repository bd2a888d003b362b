"""`curate --exclude` and `curate --check`: benchmark cases recognised by their voxel data, real
files written with SimpleITK in several formats, curated, left out, reported and resumed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from test_curate import write_dicom_series

from meddinov3.cli import app
from meddinov3.curate import CurateConfig, SliceCorpus
from meddinov3.curate.check import check_corpus
from meddinov3.curate.fingerprint import slice_digests
from meddinov3.curate.runner import curate_paths
from meddinov3.synth.toy_dataset import SyntheticDatasetSpec, synthetic_case

SPACING = (0.8, 0.8, 3.0)
RAS = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)


def ct_volumes(count: int, seed: int = 1) -> list[np.ndarray]:
    """Synthetic CT in integer HU (int16), as scanners store it."""
    spec = SyntheticDatasetSpec(shape_zyx=(12, 64, 64))
    rng = np.random.default_rng(seed)
    return [np.rint(synthetic_case(spec, rng)[0]).astype(np.int16) for _ in range(count)]


def write(path: Path, voxels: np.ndarray, direction=None, spacing=SPACING) -> Path:
    image = sitk.GetImageFromArray(voxels)
    image.SetSpacing(spacing)
    if direction is not None:
        image.SetDirection(direction)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)
    return path


def write_benchmark(folder: Path, volumes: list[np.ndarray]) -> Path:
    """An nnU-Net raw dataset: the first volumes in imagesTr (with labels), the last in imagesTs."""
    *training, test = volumes
    for k, voxels in enumerate(training):
        write(folder / "imagesTr" / f"bench_{k:03d}_0000.nii.gz", voxels)
        write(folder / "labelsTr" / f"bench_{k:03d}.nii.gz", np.zeros_like(voxels, np.uint8))
    write(folder / "imagesTs" / "bench_100_0000.nii.gz", test)
    dataset = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "organ": 1},
               "numTraining": len(training), "file_ending": ".nii.gz"}
    (folder / "dataset.json").write_text(json.dumps(dataset))
    return folder


@pytest.fixture
def setup(tmp_path):
    """A benchmark dataset of three cases, and sources: copies of its cases in other files, and others."""
    one, two, test, other = ct_volumes(4)
    benchmark = write_benchmark(tmp_path / "raw" / "Dataset555_Bench", [one, two, test])
    sources = tmp_path / "sources"
    copies = {
        "renamed.nii.gz": ("bench_000", write(sources / "renamed.nii.gz", one)),
        "reformatted.mha": ("bench_100", write(sources / "reformatted.mha", test)),
        "reformatted.nrrd": ("bench_001", write(sources / "reformatted.nrrd", two)),
        "int32.nii.gz": ("bench_000", write(sources / "int32.nii.gz", one.astype(np.int32))),
        "float32.nii.gz": ("bench_001", write(sources / "float32.nii.gz", two.astype(np.float32))),
        "ras.nii.gz": ("bench_100", write(sources / "ras.nii.gz", test[:, ::-1, ::-1].copy(), RAS)),
        "slices_3_to_8.nii.gz": ("bench_001", write(sources / "slices_3_to_8.nii.gz", two[3:9].copy())),
    }
    write_dicom_series(sources / "dicom", one, SPACING, "CT", "1.2.826.0.1.555")  # HU + 1024, rescaled
    copies["dicom#1.2.826.0.1.555"] = ("bench_000", sources / "dicom")
    others = [write(sources / "other.nii.gz", other)]
    return benchmark, sources, copies, others


def test_same_voxels_give_the_same_digests_whatever_the_type():
    (voxels,) = ct_volumes(1)
    reference = slice_digests(voxels)
    assert all(d is not None for d in reference) and len(set(reference)) == len(reference)
    for copy in (voxels.astype(np.int32), voxels.astype(np.float32), voxels.astype(np.float64),
                 (voxels.astype(np.int32) + 2048).astype(np.uint16)):
        assert slice_digests(copy) == reference
    changed = voxels.copy()
    changed[5, 30, 30] += 1
    assert [a == b for a, b in zip(slice_digests(changed), reference)] == [k != 5 for k in range(12)]
    blank = np.full((2, 64, 64), -1000, np.int16)
    blank[:, 20:40, 20:40] = -3024  # two values only: alike between scans, never a match
    assert slice_digests(blank) == [None, None]


def test_benchmark_cases_are_left_out_by_content(setup, tmp_path):
    benchmark, sources, copies, others = setup
    config = CurateConfig(exclude=(str(benchmark),))
    summary = curate_paths([sources], tmp_path / "corpus", config)

    assert summary.count("excluded") == len(copies) and summary.count("curated") == len(others)
    assert [r.source for r in SliceCorpus(tmp_path / "corpus").records] == [str(p) for p in others]
    skipped = {Path(s["source"]).name: s for s in map(json.loads, (tmp_path / "corpus/skipped.jsonl").open())}
    assert set(skipped) == set(copies)
    for name, (case, _) in copies.items():
        assert (skipped[name]["dataset"], skipped[name]["case"]) == ("Dataset555_Bench", case)
        assert skipped[name]["identical"] == (name != "slices_3_to_8.nii.gz")
    assert skipped["slices_3_to_8.nii.gz"]["shared_slices"] == 6
    assert skipped["reformatted.mha"]["file"] == "imagesTs/bench_100_0000.nii.gz"


def test_rerun_with_exclude_resumes_and_reads_nothing_again(setup, tmp_path):
    benchmark, sources, copies, others = setup
    config = CurateConfig(exclude=(str(benchmark),))
    curate_paths([sources], tmp_path / "corpus", config)
    before = stamps(tmp_path / "corpus")
    # Unchanged files (same size and modification time) are not read again: garbage in them now
    # would be an unreadable-file error or a changed verdict if they were. (DICOM files stay:
    # finding a series reads their headers.)
    for path in [*benchmark.glob("images*/*.nii.gz"), *(p for p in sources.iterdir() if p.is_file())]:
        garble_keeping_size_and_mtime(path)
    summary = curate_paths([sources], tmp_path / "corpus", config)
    assert summary.count("excluded") == len(copies) and summary.count("reused") == len(others)
    assert summary.count("curated") == 0 and stamps(tmp_path / "corpus") == before


def test_exclude_takes_benchmark_cases_out_of_an_existing_corpus(setup, tmp_path):
    benchmark, sources, copies, others = setup
    corpus = tmp_path / "corpus"
    curate_paths([copies["renamed.nii.gz"][1]], corpus)  # an earlier run, other inputs, no exclusion
    curate_paths([sources], corpus)
    assert len(SliceCorpus(corpus).records) == len(copies) + len(others)
    config = CurateConfig(exclude=(str(benchmark),))
    summary = curate_paths(others, corpus, config)  # this run names only the other volume
    assert summary.count("excluded") == len(copies)  # the earlier runs' shards, by their recorded digests
    assert [r.source for r in SliceCorpus(corpus).records] == [str(p) for p in others]
    assert len(list(corpus.glob("shards/*/*.npy"))) == len(others)


def test_check_reports_the_overlap_and_changes_nothing(setup, tmp_path):
    benchmark, sources, copies, others = setup
    corpus = tmp_path / "corpus"
    curate_paths([sources], corpus)
    before = stamps(corpus)
    report = check_corpus(corpus, [str(benchmark)])
    found = {Path(source).name: match.case for source, match in report.overlaps}
    assert found == {name: case for name, (case, _) in copies.items()}
    assert report.volumes == len(copies) + len(others) and not report.unchecked
    assert stamps(corpus) == before

    result = CliRunner().invoke(app, ["curate", "--check", str(corpus), "--exclude", str(benchmark)])
    assert result.exit_code == 1, result.output
    assert f"{len(copies)} of {len(copies) + len(others)} volume(s)" in result.output
    assert "ras.nii.gz: benchmark case: is Dataset555_Bench case bench_100" in result.output
    assert stamps(corpus) == before

    clean = tmp_path / "clean"
    curate_paths(others, clean)
    result = CliRunner().invoke(app, ["curate", "--check", str(clean), "--exclude", str(benchmark)])
    assert result.exit_code == 0 and "0 of 1 volume(s)" in result.output


def test_check_fingerprints_the_sources_of_a_corpus_curated_before_digests(setup, tmp_path):
    benchmark, sources, copies, others = setup
    corpus = tmp_path / "corpus"
    curate_paths([sources], corpus)
    manifest = corpus / "manifest.jsonl"
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    manifest.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "voxel_digests"}) + "\n" for r in lines))
    copies["renamed.nii.gz"][1].unlink()
    report = check_corpus(corpus, [str(benchmark)])
    assert len(report.overlaps) == len(copies) - 1
    assert [(Path(s).name, "is gone" in why) for s, why in report.unchecked] == [("renamed.nii.gz", True)]


def test_exclude_names_datasets_by_id_and_refuses_what_is_not_one(setup, tmp_path, monkeypatch):
    benchmark, sources, copies, others = setup
    monkeypatch.setenv("nnUNet_raw", str(benchmark.parent))
    result = CliRunner().invoke(app, ["curate", str(sources), "-o", str(tmp_path / "c"), "--exclude", "555"])
    assert result.exit_code == 0, result.output
    assert len(SliceCorpus(tmp_path / "c").records) == len(others)
    # Exclusion applies to the run that asks for it; a later run without it says what it lets in.
    result = CliRunner().invoke(app, ["curate", str(sources), "-o", str(tmp_path / "c")])
    assert result.exit_code == 0 and "an earlier run kept" in result.output and "Dataset555_Bench" in result.output
    assert len(SliceCorpus(tmp_path / "c").records) == len(others) + len(copies)
    result = CliRunner().invoke(app, ["curate", str(sources), "-o", str(tmp_path / "d"), "--exclude", str(sources)])
    assert result.exit_code == 1 and "dataset.json: no such file" in result.output
    result = CliRunner().invoke(app, ["curate", "--check", str(tmp_path / "c")])
    assert result.exit_code == 1 and "--check needs the benchmark dataset" in result.output


def garble_keeping_size_and_mtime(path: Path) -> None:
    info = path.stat()
    path.write_bytes(b"\0" * info.st_size)
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


def stamps(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".curate.lock"}
