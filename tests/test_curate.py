"""`meddinov3 curate`: real NIfTI and DICOM files written with SimpleITK, curated and read back."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from hostile_files import sitk_volume

from meddinov3.curate import CurateConfig, SliceCorpus
from meddinov3.curate.runner import curate_paths
from meddinov3.curate.shards import CorpusError

ASSET = Path(__file__).resolve().parents[1] / "src/meddinov3/assets/ct_slice_1866889.npy"
AIR, TISSUE, BONE = -1000, 40, 700


def phantom(shape_zyx, spacing_xyz, radius_mm=30.0) -> np.ndarray:
    """Air, a soft-tissue disk of ``radius_mm`` centred in-plane, a bone marker at patient
    left-anterior in the upper half of the slices (LPS array: +x = left, +y = posterior)."""
    z, y, x = shape_zyx
    sx, sy, _ = spacing_xyz
    rows, cols = np.mgrid[:y, :x]
    mm_x, mm_y = (cols - (x - 1) / 2) * sx, (rows - (y - 1) / 2) * sy
    volume = np.full(shape_zyx, AIR, np.int16)
    volume[:, mm_x**2 + mm_y**2 <= radius_mm**2] = TISSUE
    marker = (np.abs(mm_x - radius_mm / 2) < 5) & (np.abs(mm_y + radius_mm / 2) < 5)
    volume[z // 2 :, marker] = BONE
    return volume


def write_dicom_series(folder: Path, voxels: np.ndarray, spacing, modality: str, uid: str) -> None:
    """One file per slice; GDCM stores HU + 1024 with RescaleIntercept -1024, as scanners do."""
    folder.mkdir(parents=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    writer.SetImageIO("GDCMImageIO")
    for k, plane in enumerate(voxels):
        image = sitk.GetImageFromArray(plane[None])
        image.SetSpacing(spacing)
        tags = {
            "0008|0060": modality,
            "0008|0016": "1.2.840.10008.5.1.4.1.1.2",
            "0008|0018": f"{uid}.{k + 1}",
            "0020|000d": f"{uid}.0",
            "0020|000e": uid,
            "0020|0013": str(k + 1),
            "0020|0032": f"0\\0\\{k * spacing[2]}",
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0028|0030": f"{spacing[1]}\\{spacing[0]}",
            "0018|0050": str(spacing[2]),
            "0028|1052": "-1024",
            "0028|1053": "1",
        }
        for tag, value in tags.items():
            image.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"IM{k:04d}.dcm"))
        writer.Execute(image)


def by_source(corpus: SliceCorpus) -> dict[str, np.ndarray]:
    return {r.source: np.asarray(corpus.volume(i)) for i, r in enumerate(corpus.records)}


def corpus_files(root: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".curate.lock"
    }


def test_in_plane_resampling_keeps_millimetres_and_hu(tmp_path):
    spacing = (0.9, 0.6, 3.0)  # anisotropic in-plane on purpose
    voxels = phantom((10, 150, 90), spacing)
    summary = curate_paths([sitk_volume(tmp_path / "ct.nii.gz", voxels, spacing)], tmp_path / "c")
    corpus = SliceCorpus(tmp_path / "c")
    record = corpus.records[0]

    assert summary.count("curated") == 1 and len(corpus) == 10
    assert corpus[0].dtype == np.int16 and corpus[0].shape == (256, 256)
    # FOV is 90 mm tall (150 x 0.6), 81 mm wide: padded to a 90 mm square, / 256 px.
    assert record.spacing_mm == pytest.approx((90 / 256, 90 / 256), rel=0.01)
    tissue = corpus[0] > (AIR + TISSUE) / 2
    area_mm2 = tissue.sum() * record.spacing_mm[0] * record.spacing_mm[1]
    assert area_mm2 == pytest.approx(np.pi * 30.0**2, rel=0.02)
    cols = np.nonzero(tissue.any(axis=0))[0]
    rows = np.nonzero(tissue.any(axis=1))[0]
    assert (cols[-1] - cols[0] + 1) * record.spacing_mm[0] == pytest.approx(60, abs=1.5)
    assert (rows[-1] - rows[0] + 1) * record.spacing_mm[1] == pytest.approx(60, abs=1.5)
    # HU survive interpolation inside homogeneous regions, and the padding is air.
    assert corpus[0][128, 128] == TISSUE and corpus[0][0, 0] == AIR and corpus[0][128, 0] == AIR
    assert record.z_mm == pytest.approx([3.0 * k for k in range(10)])


def test_any_direction_matrix_gives_the_same_axial_slices(tmp_path):
    spacing = (0.8, 0.7, 2.0)
    voxels = phantom((8, 96, 112), spacing)
    z, y, x = voxels.shape
    sitk_volume(tmp_path / "lps.nii.gz", voxels, spacing)
    # Same patient stored with flipped x and y (the usual NIfTI/RAS layout) ...
    flipped_origin = (spacing[0] * (x - 1), spacing[1] * (y - 1), 0.0)
    sitk_volume(tmp_path / "ras.nii.gz", voxels[:, ::-1, ::-1].copy(), spacing,
                (-1, 0, 0, 0, -1, 0, 0, 0, 1), flipped_origin)
    # ... and as a coronal stack: file axes (i, j, k) = (left, superior, posterior).
    sitk_volume(tmp_path / "coronal.nii.gz", voxels.transpose(1, 0, 2).copy(),
                (spacing[0], spacing[2], spacing[1]), (1, 0, 0, 0, 0, 1, 0, 1, 0))
    curate_paths([tmp_path], tmp_path / "c")
    slices = {Path(s).name: v for s, v in by_source(SliceCorpus(tmp_path / "c")).items()}

    assert set(slices) == {"lps.nii.gz", "ras.nii.gz", "coronal.nii.gz"}
    np.testing.assert_array_equal(slices["ras.nii.gz"], slices["lps.nii.gz"])
    np.testing.assert_array_equal(slices["coronal.nii.gz"], slices["lps.nii.gz"])
    # Radiological display: the left-anterior marker sits right of centre, above centre, and
    # only in the superior (last) half of the slices.
    bone_rows, bone_cols = np.nonzero(slices["lps.nii.gz"][-1] > 400)
    assert bone_cols.mean() > 128 and bone_rows.mean() < 128
    assert (slices["lps.nii.gz"][0] < 400).all()


def test_dicom_series_are_found_read_in_hu_and_mr_is_skipped(tmp_path):
    spacing = (0.7, 0.7, 2.5)
    ct = phantom((7, 80, 80), spacing, radius_mm=20)
    write_dicom_series(tmp_path / "study" / "ct", ct, spacing, "CT", "1.2.826.0.1.3680043.9.7.1")
    mr = np.clip(ct + 1000, 0, None).astype(np.int16)
    write_dicom_series(tmp_path / "study" / "mr", mr, spacing, "MR", "1.2.826.0.1.3680043.9.7.2")

    summary = curate_paths([tmp_path / "study"], tmp_path / "c")
    corpus = SliceCorpus(tmp_path / "c")

    assert summary.count("curated") == 1 and len(corpus) == 7
    record = corpus.records[0]
    assert record.source.endswith("#1.2.826.0.1.3680043.9.7.1")
    assert record.raw["modality"] == "CT"
    assert corpus[3][128, 128] == TISSUE and corpus[3][0, 0] == AIR
    skipped = [json.loads(line) for line in (tmp_path / "c/skipped.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(skipped) == 1 and "Modality is MR" in skipped[0]["reason"]


def test_unreadable_and_non_ct_inputs_are_skipped_with_reasons(tmp_path):
    spacing = (0.8, 0.8, 3.0)
    good = sitk_volume(tmp_path / "good.nii.gz", phantom((4, 64, 64), spacing), spacing)
    mri = np.random.default_rng(0).uniform(0, 1500, (4, 64, 64)).astype(np.float32)
    sitk_volume(tmp_path / "mri.nii.gz", mri, spacing)
    (tmp_path / "corrupt.nii.gz").write_bytes(b"\x1f\x8b" + os.urandom(300))
    flat = sitk.GetImageFromArray(phantom((1, 64, 64), spacing)[0])
    sitk.WriteImage(flat, str(tmp_path / "flat2d.nii.gz"))
    np.save(tmp_path / "wrong_shape.npy", np.zeros((100, 100), np.float32))

    summary = curate_paths([tmp_path], tmp_path / "c")

    reasons = {Path(o.source).name: o.reason for o in summary.problems()}
    assert summary.count("curated") == 1 and summary.count("failed") == 0
    assert set(reasons) == {"mri.nii.gz", "corrupt.nii.gz", "flat2d.nii.gz", "wrong_shape.npy"}
    assert "no value below -100" in reasons["mri.nii.gz"]
    assert reasons["corrupt.nii.gz"].startswith("corrupt compressed data")
    assert "a 2D image" in reasons["flat2d.nii.gz"] and "expected a 3D image" in reasons["flat2d.nii.gz"]
    assert "(256, 256)" in reasons["wrong_shape.npy"]
    listed = [json.loads(line)["source"] for line in (tmp_path / "c/skipped.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(Path(s).name for s in listed) == sorted(reasons)
    assert [r.source for r in SliceCorpus(tmp_path / "c").records] == [str(good)]
    # Without the HU check the cached "not CT" verdict no longer applies.
    relaxed = curate_paths([tmp_path / "mri.nii.gz"], tmp_path / "c", CurateConfig(check_ct=False))
    assert [o.status for o in relaxed.outcomes] == ["curated"]


def test_bundled_real_slice_is_added_as_is(tmp_path):
    curate_paths([ASSET], tmp_path / "c")
    corpus = SliceCorpus(tmp_path / "c")
    expected = np.rint(np.load(ASSET)).astype(np.int16)
    assert len(corpus) == 1 and corpus.records[0].spacing_mm is None
    np.testing.assert_array_equal(corpus[0], expected)


def make_volumes(folder: Path, count: int, slices: int = 3) -> None:
    folder.mkdir()
    for n in range(count):
        spacing = (0.6 + 0.05 * n, 0.6 + 0.05 * n, 2.0)
        voxels = phantom((slices + n % 3, 48, 56), spacing, radius_mm=10)
        sitk_volume(folder / f"v{n:02d}.nii.gz", voxels, spacing)


def test_resume_after_interrupted_commit_has_no_duplicates(tmp_path):
    make_volumes(tmp_path / "in", 3)
    curate_paths([tmp_path / "in"], tmp_path / "c")
    reference = (tmp_path / "c/manifest.jsonl").read_text(encoding="utf-8")
    # Kill between the .npy rename and the .json commit marker, with a temporary file left.
    victim = sorted((tmp_path / "c/shards").glob("*/*.json"))[0]
    victim.unlink()
    leftover = victim.with_name(victim.stem + ".npy.partial-999999")
    leftover.write_bytes(b"half a shard")

    summary = curate_paths([tmp_path / "in"], tmp_path / "c")

    assert (summary.count("curated"), summary.count("reused")) == (1, 2)
    assert not leftover.exists()
    assert (tmp_path / "c/manifest.jsonl").read_text(encoding="utf-8") == reference
    corpus = SliceCorpus(tmp_path / "c")
    assert len({r.source for r in corpus.records}) == len(corpus.records) == 3
    assert len(corpus) == sum(r.n_slices for r in corpus.records)


def test_rerun_is_idempotent_and_changed_source_is_recurated(tmp_path):
    make_volumes(tmp_path / "in", 2)
    (tmp_path / "in/bad.nii.gz").write_bytes(b"not an image")
    curate_paths([tmp_path / "in"], tmp_path / "c")
    before = corpus_files(tmp_path / "c")

    summary = curate_paths([tmp_path / "in"], tmp_path / "c")
    assert (summary.count("reused"), summary.count("skipped"), summary.count("curated")) == (2, 1, 0)
    assert corpus_files(tmp_path / "c") == before

    spacing = (1.0, 1.0, 2.0)
    sitk_volume(tmp_path / "in/v00.nii.gz", phantom((9, 48, 56), spacing, radius_mm=10), spacing)
    summary = curate_paths([tmp_path / "in"], tmp_path / "c")
    assert summary.count("curated") == 1
    assert len(SliceCorpus(tmp_path / "c").records) == 2


def test_other_geometry_into_existing_corpus_is_refused(tmp_path):
    make_volumes(tmp_path / "in", 1)
    curate_paths([tmp_path / "in"], tmp_path / "c")
    with pytest.raises(CorpusError, match="geometry"):
        curate_paths([tmp_path / "in"], tmp_path / "c", CurateConfig(size=128))


def test_corpus_inside_its_input_folder_is_not_curated_again(tmp_path):
    make_volumes(tmp_path / "in", 2)
    curate_paths([tmp_path / "in"], tmp_path / "in" / "corpus")
    before = corpus_files(tmp_path / "in" / "corpus")
    summary = curate_paths([tmp_path / "in"], tmp_path / "in" / "corpus")
    assert [o.status for o in summary.outcomes] == ["reused", "reused"]
    assert corpus_files(tmp_path / "in" / "corpus") == before


def test_missing_input_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        curate_paths([tmp_path / "does-not-exist"], tmp_path / "c")


def test_slice_corpus_indexing_and_pickling(tmp_path):
    make_volumes(tmp_path / "in", 2)
    curate_paths([tmp_path / "in", ASSET], tmp_path / "c")
    corpus = SliceCorpus(tmp_path / "c")
    sizes = [r.n_slices for r in corpus.records]
    assert len(corpus) == sum(sizes)
    record, k = corpus.locate(sizes[0])
    assert record is corpus.records[1] and k == 0
    np.testing.assert_array_equal(corpus[-1], corpus[len(corpus) - 1])
    with pytest.raises(IndexError):
        corpus[len(corpus)]
    clone = pickle.loads(pickle.dumps(corpus))
    np.testing.assert_array_equal(clone[3], corpus[3])
    with pytest.raises(FileNotFoundError, match="not a curated corpus"):
        SliceCorpus(tmp_path / "in")


def test_killed_worker_run_resumes_to_the_same_corpus(tmp_path):
    """A real SIGKILL of a two-worker run, then a rerun: same corpus as an uninterrupted run."""
    make_volumes(tmp_path / "in", 12, slices=20)
    script = (
        "from meddinov3.curate.runner import curate_paths\n"
        "if __name__ == '__main__':\n"
        f"    curate_paths([{str(tmp_path / 'in')!r}], {str(tmp_path / 'killed')!r}, workers=2)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    deadline = time.monotonic() + 60
    while not list((tmp_path / "killed").glob("shards/*/*.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert 1 <= len(list((tmp_path / "killed").glob("shards/*/*.json"))) < 12

    resumed = curate_paths([tmp_path / "in"], tmp_path / "killed", workers=2)
    curate_paths([tmp_path / "in"], tmp_path / "clean")

    assert resumed.count("reused") >= 1 and resumed.count("failed") == 0
    assert not list((tmp_path / "killed").rglob("*.partial-*"))
    killed, clean = SliceCorpus(tmp_path / "killed"), SliceCorpus(tmp_path / "clean")
    assert [r.raw for r in killed.records] == [r.raw for r in clean.records]
    for a, b in zip(by_source(killed).values(), by_source(clean).values()):
        np.testing.assert_array_equal(a, b)


def test_cli_curate(tmp_path):
    from typer.testing import CliRunner

    from meddinov3.cli import app

    make_volumes(tmp_path / "in", 1)
    result = CliRunner().invoke(app, ["curate", str(tmp_path / "in"), str(ASSET), "-o", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert "corpus total" in result.output
    assert len(SliceCorpus(tmp_path / "c")) == 4
    result = CliRunner().invoke(app, ["curate", str(tmp_path / "nope"), "-o", str(tmp_path / "c")])
    assert result.exit_code != 0 and "does not exist" in result.output
