"""Hostile inputs, round two (issue 25): header geometry, values outside the stored type, file
names in another encoding, MetaImage/NRRD files shorter than their header. Each class is refused
(or reported) the same way by the one reader every command uses (`meddinov3.images`), checked
here on the reader and through the commands a user runs: one `error:` line (or a skip with the
reason), never a wrong result, never an abort."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from hostile_files import DAMAGE, cut_end, latin1_path, nifti_with, sitk_volume
from test_bad_inputs import ct_volume, error_line, label_volume

from meddinov3.filenames import RENAME_HINT
from meddinov3.images import ImageFileError, read_image

def cli(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "meddinov3.cli", *map(str, args)], capture_output=True,
                          encoding="utf-8", errors="replace", env=env)


# --- geometry ---------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_header_whose_geometry_readers_disagree_on_is_refused_naming_the_field(tmp_path, damage):
    """Before: SimpleITK read these with 1 mm spacing, a mirrored x axis or the qform's spacing,
    printing only ITK warnings; label maps and corpus slices took that geometry."""
    edit, problem = DAMAGE[damage]
    path = nifti_with(tmp_path / "ct.nii.gz", ct_volume(), edit)
    with pytest.raises(ImageFileError) as refused:
        read_image(path)
    assert str(refused.value).startswith(f"{path}: {problem}")


@pytest.mark.parametrize("spacing", [(300.0, 300.0, 2.5), (0.8, 0.8, 80.0), (0.001, 0.001, 2.5)])
def test_a_spacing_no_ct_or_mr_scan_has_is_refused_in_every_format(tmp_path, spacing):
    """Before: 300 mm voxels made `predict` allocate hundreds of GiB; 1 um ones were curated."""
    for name in ("ct.nii.gz", "ct.mha", "ct.nrrd"):
        path = sitk_volume(tmp_path / name, ct_volume(), spacing)
        with pytest.raises(ImageFileError, match="implausible voxel spacing .* CT and MR voxels measure 0.01 to 50 mm"):
            read_image(path)


def test_headers_every_reader_agrees_on_are_read_with_their_geometry(tmp_path):
    """Oblique and left-handed (SimpleITK), sform only (nibabel's default), no transform at all,
    an sform code whose rows were never set."""
    cos, sin = np.cos(0.3), np.sin(0.3)
    oblique = sitk_volume(tmp_path / "oblique.nii.gz", ct_volume(), (0.7, 0.9, 3.0),
                          (cos, -sin, 0, sin, cos, 0, 0, 0, -1), (10.5, -3.25, 100.125))
    image = read_image(oblique)
    assert np.allclose(image.GetDirection(), (cos, -sin, 0, sin, cos, 0, 0, 0, -1), atol=1e-6)

    def sform_only(header):
        header["qform_code"] = 0

    def no_transform(header):
        header["qform_code"] = header["sform_code"] = 0

    def sform_code_without_rows(header):  # a writer's slip: every reader goes by the qform
        header["srow_x"] = header["srow_y"] = header["srow_z"] = 0

    for edit in (sform_only, no_transform, sform_code_without_rows):
        image = read_image(nifti_with(tmp_path / f"{edit.__name__}.nii", ct_volume(), edit))
        assert np.allclose(image.GetSpacing(), (0.8, 0.8, 2.5))


def test_every_command_refuses_a_damaged_header_the_same_way(tmp_path):
    """curate skips the source with the reason the other commands print as their error."""
    edit, problem = DAMAGE["pixdim negative"]
    scan = nifti_with(tmp_path / "in" / "ct.nii.gz", ct_volume(), edit)
    labels = nifti_with(tmp_path / "ref" / "ct.nii.gz", label_volume(), edit)
    nifti_with(tmp_path / "pred" / "ct.nii.gz", label_volume())
    line = error_line(cli("evaluate", "--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "--output", tmp_path / "e"))
    assert line.startswith(f"error: case ct: {labels}: {problem}")
    assert not (tmp_path / "e").exists() or list((tmp_path / "e").iterdir()) == []
    line = error_line(cli("features", "--image", scan, "--size", "64", "--out", tmp_path / "maps"))
    assert line.startswith(f"error: {scan}: {problem}")
    result = cli("curate", tmp_path / "in", "-o", tmp_path / "corpus")
    assert result.returncode == 0, result.stderr
    skipped = json.loads((tmp_path / "corpus" / "skipped.jsonl").read_text(encoding="utf-8"))
    assert skipped["source"] == str(scan) and skipped["reason"].startswith(problem)
    assert (tmp_path / "corpus" / "manifest.jsonl").read_text(encoding="utf-8") == ""


# --- MetaImage and NRRD shorter than their header ---------------------------------------------


@pytest.mark.parametrize("name, compressed", [("v.mha", False), ("v.mha", True), ("v.nrrd", False), ("v.nrrd", True)])
def test_a_short_metaimage_or_nrrd_file_is_called_truncated(tmp_path, name, compressed):
    """Before: MetaImage's reason was "No such file or directory"."""
    path = tmp_path / name
    image = sitk.GetImageFromArray(ct_volume(3).astype(np.int16))
    sitk.WriteImage(image, str(path), compressed)
    cut_end(path, 1000)
    with pytest.raises(ImageFileError, match=r"^.*: truncated: .*\(cut off while copying or downloading\?\)$"):
        read_image(path)


def test_a_metaimage_whose_raw_file_is_short_is_called_truncated(tmp_path):
    path = sitk_volume(tmp_path / "v.mhd", ct_volume())
    cut_end(tmp_path / "v.raw", 2)
    with pytest.raises(ImageFileError, match="truncated: the header describes 65536 bytes of voxel data, v.raw holds 65534"):
        read_image(path)


# --- file names that are not UTF-8 ------------------------------------------------------------


def c_locale() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LC_")}
    return dict(env, LC_ALL="C", LANG="C")


READ_BOTH = """
import os, sys
from meddinov3.images import ImageFileError, read_header, read_image
for read in (read_image, read_header):
    try:
        read(os.fsdecode(sys.argv[1].encode("utf-8", "surrogateescape")))
    except ImageFileError as error:
        print(error)
"""


def test_a_latin1_file_name_is_refused_before_simpleitk_sees_it(tmp_path):
    """Before: SimpleITK aborted the process (std::logic_error, SIGABRT) in predict and evaluate."""
    path = latin1_path(tmp_path, ".nii.gz")
    sitk_volume(tmp_path / "x.nii.gz", ct_volume()).rename(path)
    # In processes of their own: where the check fails, the process aborts.
    result = subprocess.run([sys.executable, "-c", READ_BOTH, os.fsencode(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == [f"{tmp_path}/caf\\xe9.nii.gz: the name is not valid UTF-8 (Latin-1?), which"
                                          f" SimpleITK cannot open: {RENAME_HINT}"] * 2
    (tmp_path / "ref").mkdir()
    (tmp_path / "pred").mkdir()
    for folder in ("ref", "pred"):
        sitk_volume(tmp_path / "x.nii.gz", label_volume()).rename(latin1_path(tmp_path / folder, ".nii.gz"))
    result = cli("evaluate", "--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "--output", tmp_path / "e",
                 env=c_locale())
    assert result.returncode != -signal.SIGABRT
    # The case name too is shown with the byte escaped, as in the path.
    assert error_line(result) == (f"error: case caf\\xe9: {tmp_path / 'ref'}/caf\\xe9.nii.gz: the name is not valid UTF-8"
                                  f" (Latin-1?), which SimpleITK cannot open: {RENAME_HINT}")


def test_curate_skips_a_latin1_file_name_with_the_reason(tmp_path):
    """Before: the run stopped with a Python UnicodeEncodeError line."""
    (tmp_path / "in").mkdir()
    sitk_volume(tmp_path / "x.nii.gz", ct_volume()).rename(latin1_path(tmp_path / "in", ".nii.gz"))
    result = cli("curate", tmp_path / "in", "-o", tmp_path / "corpus", env=c_locale())
    assert result.returncode == 0, result.stderr
    skipped = json.loads((tmp_path / "corpus" / "skipped.jsonl").read_text(encoding="utf-8"))
    assert skipped["reason"].startswith("the name is not valid UTF-8")


# --- values outside the stored type -----------------------------------------------------------


def test_curate_reports_clipping_per_source_in_the_log_and_the_manifest(tmp_path):
    """Before: values beyond int16 were clipped without a word (only the manifest's range showed it)."""
    slices = ct_volume(0, (2, 256, 256)).astype(np.float32)
    slices[0, 100, 100:105] = 40000.0
    slices[1, 50, 50:53] = -50000.0
    np.save(tmp_path / "in.npy", slices)
    result = cli("curate", tmp_path / "in.npy", "-o", tmp_path / "corpus")
    assert result.returncode == 0, result.stderr
    note = (f"note {tmp_path / 'in.npy'}: 8 voxel(s) outside the int16 range [-32768, 32767] clipped (3 below, 5 above;"
            " values -50000 to 40000)")
    assert note in " ".join(result.stderr.split())
    record = json.loads((tmp_path / "corpus" / "manifest.jsonl").read_text(encoding="utf-8"))
    assert record["clipped"] == {"voxels": 8, "below": 3, "above": 5, "range": [-50000.0, 40000.0]}


def test_curate_checks_every_voxel_of_a_npy_for_finiteness(tmp_path):
    """Before: a NaN row between the rows the CT screening samples was stored as -1000 HU."""
    slices = ct_volume(0, (1, 256, 256)).astype(np.float32)
    slices[0, 1, :] = np.nan  # the screening samples every fourth row from row 0
    np.save(tmp_path / "in.npy", slices)
    result = cli("curate", tmp_path / "in.npy", "-o", tmp_path / "corpus")
    assert result.returncode == 0, result.stderr
    assert f"skipped {tmp_path / 'in.npy'}: 256 of 65536 voxels are NaN or infinite" in " ".join(result.stderr.split())
    assert (tmp_path / "corpus" / "manifest.jsonl").read_text(encoding="utf-8") == ""
