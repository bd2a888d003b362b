"""`meddinov3 synth`: synthetic abdominal CT cases and the nnU-Net dataset they form."""

from __future__ import annotations

import json

import numpy as np
import pytest

from meddinov3.synth.case import SMALL_SLICES, SPACING_XY, SPACING_Z, draw_case, generate_case
from meddinov3.synth.dataset import DatasetError, SynthSpec, write_dataset
from meddinov3.synth.preview import save_window_png
from meddinov3.synth.tissues import LABELS

ORGANS = [name for name in LABELS if name != "background"]
# Adult-equivalent volume (mL at scale 1) ranges: the organ sizes of adult CT datasets.
ADULT_ML = {
    "liver": (900, 2600),
    "spleen": (80, 600),
    "kidney_left": (80, 320),
    "kidney_right": (80, 320),
    "aorta": (25, 250),
    "stomach": (80, 900),
    "vertebrae": (100, 700),
}


def first_seed(predicate) -> int:
    return next(s for s in range(100) if predicate(draw_case(s, 0).scanner.contrast))


@pytest.fixture(scope="module")
def enhanced():
    return generate_case(first_seed(lambda c: c > 0.7), 0)


@pytest.fixture(scope="module")
def plain():
    return generate_case(first_seed(lambda c: c == 0.0), 0)


def centroid(mask: np.ndarray) -> np.ndarray:
    """(slice, row, column) centre of a mask."""
    return np.argwhere(mask).mean(axis=0)


def test_same_seed_gives_identical_case_and_other_seeds_differ(enhanced):
    seed = first_seed(lambda c: c > 0.7)
    again = generate_case(seed, 0)
    np.testing.assert_array_equal(again.image, enhanced.image)
    np.testing.assert_array_equal(again.label, enhanced.label)
    assert again.spacing_xyz == enhanced.spacing_xyz
    other = draw_case(seed + 1, 0)
    assert other.plan != draw_case(seed, 0).plan
    assert draw_case(seed, 1).plan != draw_case(seed, 0).plan


def test_spacing_and_shape_ranges_over_many_cases():
    plans = [draw_case(seed, 0).plan for seed in range(40)]
    for plan in plans:
        sx, sy, sz = plan.spacing_xyz
        assert SPACING_XY[0] <= sx == sy <= SPACING_XY[1]
        assert SPACING_Z[0] <= sz <= SPACING_Z[1]
        z, y, x = plan.shape_zyx
        assert SMALL_SLICES[0] <= z <= SMALL_SLICES[1] and 128 <= x == y <= 192
    # The ranges are used, not one corner of them.
    assert np.ptp([p.spacing_xyz[2] for p in plans]) > 1.5
    assert np.ptp([p.spacing_xyz[0] for p in plans]) > 0.15
    full = draw_case(0, 0, "full").plan
    assert full.shape_zyx[1:] == (512, 512) and full.shape_zyx[0] >= 40
    assert draw_case(0, 0, shape_zyx=(24, 96, 112)).plan.shape_zyx == (24, 96, 112)


@pytest.mark.parametrize("which", ["enhanced", "plain"])
def test_every_organ_is_present_with_plausible_volume(which, request):
    case = request.getfixturevalue(which)
    voxel_ml = float(np.prod(case.spacing_xyz)) / 1000.0
    assert case.image.dtype == np.int16 and case.label.dtype == np.uint8
    assert set(np.unique(case.label)) == set(LABELS.values())
    for organ in ORGANS:
        adult_ml = (case.label == LABELS[organ]).sum() * voxel_ml / case.scale**3
        low, high = ADULT_ML[organ]
        assert low <= adult_ml <= high, f"{organ}: {adult_ml:.0f} mL adult-equivalent"


def organ_median(case, organ: str) -> float:
    return float(np.median(case.image[case.label == LABELS[organ]]))


def test_hounsfield_units_of_an_enhanced_scan(enhanced):
    liver, spleen, aorta = (organ_median(enhanced, o) for o in ("liver", "spleen", "aorta"))
    assert 80 <= liver <= 125 and 80 <= spleen <= 135 and 150 <= aorta <= 260
    for side in ("kidney_left", "kidney_right"):
        assert 100 <= organ_median(enhanced, side) <= 220
    assert 150 <= organ_median(enhanced, "vertebrae") <= 700
    stomach = enhanced.image[enhanced.label == LABELS["stomach"]]
    assert np.mean(stomach < -900) > 0.05 and np.mean((stomach > -30) & (stomach < 60)) > 0.05


def test_hounsfield_units_of_a_plain_scan_and_background(plain):
    for organ, (low, high) in {"liver": (45, 75), "spleen": (35, 70), "aorta": (25, 65)}.items():
        assert low <= organ_median(plain, organ) <= high, organ
    body = plain.label == 0
    values = plain.image[body]
    assert np.mean((values > -150) & (values < -60)) > 0.05  # fat
    corner = plain.image[:, :8, :8].astype(np.float32)  # air outside the patient
    assert abs(float(np.median(corner)) + 1000) < 15 and 8 <= float(corner.std()) <= 25


def test_anatomy_is_where_a_radiologist_expects_it(enhanced, tmp_path):
    """Array (slice, row, column): row 0 anterior, column 0 the patient's right."""
    label, image = enhanced.label, enhanced.image
    spine = centroid(label == LABELS["vertebrae"])
    liver = centroid(label == LABELS["liver"])
    aorta = centroid(label == LABELS["aorta"])
    width = image.shape[2]
    assert abs(spine[2] - width / 2) < 0.08 * width and spine[1] > image.shape[1] / 2
    assert liver[2] < spine[2]  # liver on the image left = patient right
    assert aorta[1] < spine[1] and aorta[2] > spine[2]  # anterior and to the patient's left
    assert centroid(label == LABELS["kidney_left"])[2] > spine[2]
    assert centroid(label == LABELS["kidney_right"])[2] < spine[2]
    spleen, stomach = centroid(label == LABELS["spleen"]), centroid(label == LABELS["stomach"])
    assert spleen[2] > spine[2] and spleen[1] > aorta[1]
    assert stomach[2] > spine[2] and stomach[1] < spine[1]
    inside = label == LABELS["stomach"]
    gas_rows = np.argwhere(inside & (image < -900))[:, 1]
    fluid_rows = np.argwhere(inside & (image > -30) & (image < 40))[:, 1]
    assert gas_rows.mean() < fluid_rows.mean()  # supine: air-fluid level, gas anterior

    middle = image[image.shape[0] // 2]
    png = save_window_png(middle, tmp_path / "middle.png")
    import matplotlib.pyplot as plt

    grey = plt.imread(png)
    assert grey.shape[:2] == middle.shape and grey[..., 0].std() > 0.1


def test_dataset_passes_nnunet_integrity_check_and_resumes(tmp_path):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity
    from typer.testing import CliRunner

    from meddinov3.cli import app

    out = tmp_path / "nnUNet_raw" / "Dataset987_SynthTest"
    result = CliRunner().invoke(app, ["synth", str(out), "--cases", "2", "--test-cases", "1",
                                      "--seed", "3"])
    assert result.exit_code == 0, result.output
    verify_dataset_integrity(str(out), 1)

    description = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    assert description["channel_names"] == {"0": "CT"} and description["numTraining"] == 2
    assert description["labels"] == LABELS and description["file_ending"] == ".nii.gz"
    assert sorted(p.name for p in (out / "imagesTs").iterdir()) == ["synth_0002_0000.nii.gz"]
    assert not (out / ".partial").exists()

    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.nii.gz")}
    written = []
    write_dataset(out, SynthSpec(2, 1, 3), on_case=lambda i, w: written.append(w))
    assert written == [False, False, False]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.nii.gz")} == before
    with pytest.raises(DatasetError, match="already holds"):
        write_dataset(out, SynthSpec(2, 1, 4))


def test_dataset_folder_must_be_named_like_nnunet(tmp_path):
    with pytest.raises(DatasetError, match="DatasetXXX_Name"):
        write_dataset(tmp_path / "SynthAbdomen", SynthSpec(1))
    with pytest.raises(DatasetError, match="DatasetXXX_Name"):
        write_dataset(tmp_path / "Dataset5_Synth", SynthSpec(1))
