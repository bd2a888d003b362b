"""`meddinov3 compare --train-cases`: nested subsets, trained inside nnU-Net on their own splits
entries, scored on the same held-out cases, tabulated and plotted; reruns reuse everything."""

from __future__ import annotations

import csv
import json
import math

import matplotlib.image
import pytest
from nnunetv2.utilities.crossval_split import generate_crossval_split
from typer.testing import CliRunner

from baseline_workspace import CONFIGURATION, QUICK_TRAINING, baseline_workspace

from meddinov3.cli import app
from meddinov3.compare.label_efficiency import run_label_efficiency
from meddinov3.compare.results import ComparisonError
from meddinov3.compare.runner import ComparisonJob
from meddinov3.compare.spread import per_case_means, spread_of
from meddinov3.compare.subsets import parse_counts
from meddinov3.nnunet.paths import NnUNetSetupError
from meddinov3.nnunet.subset_folds import FOLD_RECORD, SUBSET_PLANS_SUFFIX, claim_fold_folder
from meddinov3.nnunet.subsets import SubsetError, nested_subsets

METHODS = ["nnunet", "segformer"]
CASES = [f"case_{k:03d}" for k in range(40)]


def test_subsets_are_nested_and_the_same_for_every_call():
    subsets = nested_subsets(CASES, [1, 2, 5, 20, "all"], seed=3)
    assert [s.count for s in subsets] == [1, 2, 5, 20, 40]
    for smaller, larger in zip(subsets, subsets[1:]):
        assert set(smaller.cases) < set(larger.cases)
    assert subsets[-1].is_all and set(subsets[-1].cases) == set(CASES)
    # Another call (another method) with the cases in another order draws the same subsets.
    assert nested_subsets(list(reversed(CASES)), [20, 5, 1, 2, "all"], seed=3) == subsets
    # The seed decides which cases; a subset is not simply the first names.
    assert nested_subsets(CASES, [5], seed=4)[0].cases != subsets[2].cases
    assert subsets[2].cases != tuple(sorted(CASES)[:5])


def test_counts_are_checked():
    assert parse_counts("1, 2,5,ALL") == [1, 2, 5, "all"]
    for text, message in (("1,x", "'x' is neither"), ("0", "counts start at 1"), (" , ", "at least one")):
        with pytest.raises(ComparisonError, match=message):
            parse_counts(text)
    with pytest.raises(SubsetError, match="only 40 training case"):
        nested_subsets(CASES, [41], seed=0)
    # A count of every case is the full fold, listed once.
    assert [(s.count, s.is_all) for s in nested_subsets(CASES, [40, "all"], seed=0)] == [(40, True)]


def test_spread_is_over_the_cases_mean_over_labels(tmp_path):
    rows = [("a", 1, 0.9, 0.8), ("a", 2, 0.7, "nan"), ("b", 1, 0.5, 0.4), ("b", 2, "nan", "nan"), ("c", 1, 0.2, 0.1),
            ("c", 2, 0.4, 0.3)]
    with open(tmp_path / "evaluation_per_case.csv", "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["case", "label", "name", "dice", "nsd", "hd95"])
        writer.writerows((case, label, "x", dice, nsd, 1.0) for case, label, dice, nsd in rows)
    means = per_case_means(tmp_path / "evaluation_per_case.csv", "dice")
    assert means == pytest.approx({"a": 80.0, "b": 50.0, "c": 30.0})
    spread = spread_of(means)
    assert spread.std == pytest.approx(25.166114784, rel=1e-9)  # sample std of 80, 50, 30
    assert (spread.q25, spread.q75, spread.n_cases) == (40.0, 65.0, 3)
    assert math.isnan(spread_of({"a": 80.0}).std)


def test_a_fold_folder_that_trained_on_other_cases_is_refused(tmp_path):
    claim_fold_folder(tmp_path, ["b", "a"], ["z"])
    claim_fold_folder(tmp_path, ["a", "b"], ["z"])  # same cases: reused
    with pytest.raises(NnUNetSetupError, match="trained on other cases"):
        claim_fold_folder(tmp_path, ["a", "c"], ["z"])
    unrecorded = tmp_path / "other"
    unrecorded.mkdir()
    (unrecorded / "checkpoint_final.pth").touch()
    with pytest.raises(NnUNetSetupError, match="does not record its training cases"):
        claim_fold_folder(unrecorded, ["a"], ["z"])


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    with baseline_workspace(tmp_path_factory.getbasetemp()) as ws:
        yield ws


def job(workspace, output) -> ComparisonJob:
    return ComparisonJob(
        dataset=workspace.dataset, methods=METHODS, configuration=CONFIGURATION, device="cpu",
        show_progress=False, eval_workers=1, output=output, **QUICK_TRAINING,
    )


def test_subsets_train_on_their_own_splits_entries_and_reruns_reuse_them(workspace, tmp_path):
    splits_path = workspace.preprocessed / "splits_final.json"
    before = json.loads(splits_path.read_text()) if splits_path.is_file() else None
    outputs = run_label_efficiency(job(workspace, tmp_path), [1, 2], seed=0, report=lambda line: None)

    splits = json.loads(splits_path.read_text())
    if before is not None:
        assert splits[: len(before)] == before  # the user's folds keep their cases
    # Folds 0-4 are nnU-Net's own 5-fold split, whoever wrote the file first.
    cases = sorted(p.name.removesuffix("_0000.nii.gz") for p in (workspace.raw / "imagesTr").iterdir())
    assert splits[:5] == generate_crossval_split(cases, seed=12345, n_splits=5)
    recorded = json.loads(outputs.subsets.read_text())
    train, held_out = sorted(splits[0]["train"]), sorted(splits[0]["val"])
    assert (recorded["training_cases"], recorded["held_out_cases"]) == (train, held_out)
    one, two = recorded["subsets"]
    assert (one["count"], two["count"]) == (1, 2) and set(one["cases"]) < set(two["cases"]) <= set(train)
    for subset in (one, two):
        fold = subset["nnunet_fold"]
        assert fold >= 5 and subset["plans_identifier"] == f"nnUNetPlans{SUBSET_PLANS_SUFFIX}"
        assert (sorted(splits[fold]["train"]), sorted(splits[fold]["val"])) == (subset["cases"], held_out)
        for method in METHODS:
            folder = subset_fold_folder(workspace, method, subset)
            assert json.loads((folder / FOLD_RECORD).read_text())["train"] == subset["cases"]
            # nnU-Net itself trained on the subset: its log names the entry and its size.
            log = "".join(p.read_text() for p in folder.glob("training_log_*.txt"))
            assert f"This split has {len(subset['cases'])} training and {len(held_out)} validation cases" in log
            # Never beside the 5 cross-validation folds of the main model folder.
            assert not (workspace.fold_folder(trainer(method)).parent / f"fold_{fold}").exists()

    rows = list(csv.DictReader(outputs.csv.open()))
    assert [(r["method"], r["train_cases"]) for r in rows] == [(m, c) for c in ("1", "2") for m in METHODS]
    assert {r["held_out_cases"] for r in rows} == {str(len(held_out))}
    for row, scored in zip(rows, outputs.rows):
        summary = json.loads((tmp_path / f"train_{row['train_cases']}" / row["method"] / "evaluation_summary.json").read_text())
        assert float(row["dsc"]) == pytest.approx(100 * summary["mean_over_labels"]["dice"], abs=1e-4)
        assert scored.scores.n_cases == len(held_out) and set(scored.case_dsc) == set(held_out)
    text = outputs.markdown.read_text(encoding="ascii")  # one held-out case: std n/a, never a non-ASCII dash
    assert "| nnU-Net | 1 |" in text and "| SegFormer | 2 |" in text and "| n/a |" in text
    image = matplotlib.image.imread(outputs.plot)
    assert image.ndim == 3 and image.shape[0] > 300

    checkpoints = [subset_fold_folder(workspace, m, s) / "checkpoint_final.pth" for m in METHODS for s in (one, two)]
    stamps = [p.stat().st_mtime_ns for p in checkpoints]
    lines: list[str] = []
    again = run_label_efficiency(job(workspace, tmp_path), [1, 2], seed=0, report=lines.append)
    assert len(lines) == 4 and all("reusing the finished run" in line for line in lines)
    assert [p.stat().st_mtime_ns for p in checkpoints] == stamps
    assert json.loads(splits_path.read_text()) == splits  # found again, not appended twice
    assert [r.scores for r in again.rows] == [r.scores for r in outputs.rows]


def test_cli_runs_the_label_efficiency_table(workspace, tmp_path):
    args = ["compare", workspace.dataset, "--methods", ",".join(METHODS), "--config", CONFIGURATION,
            "--device", "cpu", "--epochs", "1", "--iterations-per-epoch", "2", "--no-progress",
            "-o", str(tmp_path), "-j", "1", "--train-cases", "1,all", "--seed", "0"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "# Label efficiency on" in result.output and "| nnU-Net | all (4) |" in result.output
    assert {p.name for p in tmp_path.iterdir()} >= {"subsets.json", "label_efficiency.md", "label_efficiency.png"}
    bad = CliRunner().invoke(app, [*args[:-4], "--train-cases", "1,9"])
    assert bad.exit_code == 1 and "only 4 training case(s)" in bad.output


def subset_fold_folder(workspace, method: str, subset: dict):
    base = workspace.fold_folder(trainer(method)).parent.parent
    return base / f"{trainer(method)}__{subset['plans_identifier']}__{CONFIGURATION}" / f"fold_{subset['nnunet_fold']}"


def trainer(method: str) -> str:
    from meddinov3.nnunet.methods import get_method

    return get_method(method).trainer
