"""`meddinov3 compare`: trainings reused or run, held-out cases scored, table and plot written."""

from __future__ import annotations

import csv
import io
import json
import math

import matplotlib.image
import pytest
from typer.testing import CliRunner

from baseline_workspace import CONFIGURATION, QUICK_TRAINING, baseline_workspace

from meddinov3.cli import app
from meddinov3.compare.paper import paper_table
from meddinov3.compare.recipes import trained_precision
from meddinov3.compare.results import ComparisonError, scores_from_summary
from meddinov3.compare.runner import ComparisonJob, run_comparison
from meddinov3.compare.table import ComparisonContext, csv_table, markdown_table

METHODS = ["nnunet", "segformer", "dino-unet"]


def summary(dice: dict[int, float], nsd: dict[int, float], names: dict[int, str], n_cases: int = 3) -> dict:
    """An evaluation summary as `evaluate_folder` writes it (only the fields the table reads)."""
    labels = {
        str(label): {"name": names[label], "dice": {"mean": dice[label]}, "nsd": {"mean": nsd[label]}}
        for label in names
    }
    means = {metric: _nanmean(values.values()) for metric, values in (("dice", dice), ("nsd", nsd))}
    return {"labels": labels, "mean_over_labels": means, "n_cases": n_cases, "protocol": {"tolerance_mm": 1.0}}


def test_paper_numbers_come_from_the_data_file():
    paper = paper_table()
    assert paper.datasets == ("AMOS22", "KiTS23", "LiTS", "BTCV")
    assert paper.value("dsc", "meddinov3", "AMOS22") == 87.38
    assert paper.value("dsc", "segformer", "BTCV") == 37.04
    assert paper.value("nsd", "nnunet", "KiTS23") == 64.85
    assert paper.value("nsd", "dino-unet", "LiTS") == 48.25
    assert paper.dataset_for("Dataset011_AMOS22CT") == "AMOS22"
    assert paper.dataset_for("Dataset220_KiTS2023") == "KiTS23"
    assert paper.dataset_for("Dataset986_BaselineCT") is None
    assert paper.value("dsc", "scratch", "AMOS22") is None


def test_table_puts_paper_numbers_beside_the_measured_ones():
    names = {1: "liver", 2: "tumor"}
    results = [
        scores_from_summary("nnunet", summary({1: 0.95, 2: 0.55}, {1: 0.7, 2: float("nan")}, names)),
        scores_from_summary("meddinov3", summary({1: 0.96, 2: 0.54}, {1: 0.72, 2: 0.4}, names)),
    ]
    context = ComparisonContext("Dataset003_LiTS", 0, paper_table().dataset_for("Dataset003_LiTS"))
    text = markdown_table(context, results, paper_table())
    assert "| nnU-Net | 75.00 | 70.00 | 75.00 | 53.02 |" in text
    assert "| MedDINOv3 | 75.00 | 56.00 | 75.28 | 53.01 |" in text
    assert "| Method | liver | tumor |" in text and "| nnU-Net | 70.00 | – |" in text

    rows = list(csv.DictReader(io.StringIO(csv_table(context, results, paper_table()))))
    assert len(rows) == 2 * (1 + len(names))
    mean = next(r for r in rows if r["method"] == "meddinov3" and r["label"] == "mean")
    assert (float(mean["dsc"]), float(mean["paper_dsc"]), float(mean["paper_nsd"])) == (75.0, 75.28, 53.01)
    assert next(r for r in rows if r["method"] == "nnunet" and r["class"] == "tumor")["nsd"] == ""


def test_methods_scored_differently_are_not_tabulated():
    names = {1: "liver"}
    one = scores_from_summary("nnunet", summary({1: 0.9}, {1: 0.8}, names, n_cases=3))
    other = scores_from_summary("segformer", summary({1: 0.9}, {1: 0.8}, names, n_cases=4))
    with pytest.raises(ComparisonError, match="not evaluated alike"):
        markdown_table(ComparisonContext("Dataset001_X", 0, None), [one, other], paper_table())


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    with baseline_workspace(tmp_path_factory.getbasetemp()) as ws:
        yield ws


def quick_job(workspace, **changes) -> ComparisonJob:
    values = dict(
        dataset=workspace.dataset, methods=METHODS, configuration=CONFIGURATION,
        weights={"dino-unet": str(workspace.weights)}, device="cpu", show_progress=False, eval_workers=1,
        **QUICK_TRAINING,
    )
    values.update(changes)
    return ComparisonJob(**values)


def test_compare_writes_table_csv_and_plot(workspace):
    lines: list[str] = []
    outputs = run_comparison(quick_job(workspace), report=lines.append)

    text = outputs.markdown.read_text(encoding="utf-8")
    assert f"# Method comparison on {workspace.dataset}, fold 0" in text
    for name in ("nnU-Net", "SegFormer", "Dino U-Net (B)"):
        assert f"| {name} |" in text
    assert "| Method | liver | kidney | bone |" in text
    rows = list(csv.DictReader(outputs.csv.open()))
    assert {r["method"] for r in rows} == set(METHODS) and len(rows) == len(METHODS) * 4
    image = matplotlib.image.imread(outputs.plot)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 400

    # Every class is in every held-out reference here, so the headline DSC must equal nnU-Net's
    # own evaluation of the same predictions (its validation summary.json, "foreground_mean").
    for scores in outputs.scores:
        nnunet_summary = workspace.fold_folder(_trainer(scores.method)) / "validation" / "summary.json"
        expected = json.loads(nnunet_summary.read_text(encoding="utf-8"))["foreground_mean"]["Dice"]
        assert math.isclose(scores.dsc, 100 * expected, rel_tol=1e-6)
        assert 0.0 <= scores.nsd <= 100.0

    # Each method's recipe as it trained, read back from its checkpoint and printed with the table.
    plans = json.loads((workspace.preprocessed / "nnUNetPlans.json").read_text(encoding="utf-8"))
    batch = plans["configurations"][CONFIGURATION]["batch_size"]
    patch = "x".join(map(str, plans["configurations"][CONFIGURATION]["patch_size"]))
    common = f"| fp32 (cpu: no autocast), clip 12 | {batch} | {patch} |"
    recorded_fp32 = f"| fp32 (no autocast), clip 12 | {batch} | {patch} |"  # the ViT trainer's recorded precision
    assert "## Training recipes" in text
    assert f"| nnU-Net | default (= release) | SGD | 0.01 | 3e-05 | momentum 0.99, Nesterov | poly 0.9 per epoch, 1 epochs {common}" in text
    assert f"| SegFormer | default (= release) | AdamW | 2e-05 | 0.05 | betas (0.9, 0.98) | poly 0.9 per epoch, 1 epochs {common}" in text
    assert f"| Dino U-Net (B) | default | SGD | 0.001 | 3e-05 | momentum 0.99, Nesterov | poly 0.9 per epoch, 1 epochs {recorded_fp32}" in text
    recorded = json.loads(outputs.recipes.read_text(encoding="utf-8"))
    assert [r["method"] for r in recorded] == METHODS and recorded[1]["lr"] == "2e-05"


@pytest.mark.parametrize("recorded,device,expected", [
    ("bf16", "cuda", "bf16 autocast"),  # not nnU-Net's fp16 + GradScaler: what the ViT trainer ran
    ("fp16", "cuda:1", "fp16 autocast + GradScaler"),
    ("fp32", "cuda", "fp32 (no autocast)"),
    (None, "cuda", "fp16 autocast + GradScaler"),  # no spec: nnU-Net's own train_step
    (None, "cpu", "fp32 (cpu: no autocast)"),
])
def test_recipe_table_reports_the_precision_the_run_recorded(recorded, device, expected):
    from meddinov3.backbone import preset_config
    from meddinov3.nnunet.spec import PLANS_KEY, NetworkSpec

    configuration = {"patch_size": [896, 896]}
    if recorded is not None:
        spec = NetworkSpec("meddinov3", preset_config("vitb16").to_dict(), True, [2, 5, 8, 11], precision=recorded)
        configuration[PLANS_KEY] = spec.to_dict()
    assert trained_precision(configuration, device) == expected


def test_second_run_reuses_trainings_and_evaluations(workspace):
    run_comparison(quick_job(workspace), report=lambda line: None)
    checkpoint = workspace.fold_folder("SegFormerTrainer") / "checkpoint_final.pth"
    summary_file = workspace.root / "results" / workspace.dataset / "comparison_fold0" / "segformer" / "evaluation_summary.json"
    stamps = (checkpoint.stat().st_mtime_ns, summary_file.stat().st_mtime_ns)
    lines: list[str] = []
    run_comparison(quick_job(workspace), report=lines.append)
    assert all("reusing the finished run" in line for line in lines)
    assert (checkpoint.stat().st_mtime_ns, summary_file.stat().st_mtime_ns) == stamps


def test_cli_prints_the_table(workspace, tmp_path):
    args = ["compare", workspace.dataset, "--methods", "nnunet,segformer", "--config", CONFIGURATION,
            "--device", "cpu", "--epochs", "1", "--iterations-per-epoch", "2", "--no-progress",
            "-o", str(tmp_path), "-j", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "| nnU-Net |" in result.output and "| SegFormer |" in result.output
    assert {p.name for p in tmp_path.iterdir()} >= {"comparison.md", "comparison.csv", "comparison.png"}


def test_a_finished_run_of_another_recipe_is_not_reused(workspace, tmp_path):
    run_comparison(quick_job(workspace, methods=["dino-unet"], output=tmp_path), report=lambda line: None)
    job = quick_job(workspace, methods=["dino-unet"], recipe="release", output=tmp_path)
    with pytest.raises(ComparisonError, match="trained with --recipe default, not release"):
        run_comparison(job)


def test_weights_for_a_method_not_compared_are_refused(workspace):
    with pytest.raises(ComparisonError, match="--weights given for method"):
        run_comparison(quick_job(workspace, methods=["nnunet"]))


def test_missing_pretrained_weights_are_asked_for_before_training(workspace, tmp_path):
    job = quick_job(workspace, methods=["meddinov3"], weights={}, output=tmp_path)
    with pytest.raises(ComparisonError, match="--weights meddinov3=PATH"):
        run_comparison(job)


def _trainer(method: str) -> str:
    from meddinov3.nnunet.methods import get_method

    return get_method(method).trainer


def _nanmean(values) -> float:
    defined = [v for v in values if not math.isnan(v)]
    return sum(defined) / len(defined) if defined else math.nan
