"""The demo's few-label comparison: both inits fine-tuned on the same nested subsets inside nnU-Net
(tiny settings, real training, prediction and evaluation), the paired bootstrap of their
difference, and the sentences and table that report it."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from meddinov3.demo.config import DemoConfig, demo_config
from meddinov3.demo.paired_bootstrap import mean_over_organs, paired_difference
from meddinov3.demo.steps import Step, run_steps
from meddinov3.demo.workspace import Workspace

ORGANS = ["liver", "spleen", "kidney"]


def table(dice: list[list[float]], cases: list[str] | None = None) -> dict:
    cases = cases or [f"case_{k}" for k in range(len(dice))]
    return {"cases": cases, "organs": ORGANS[: len(dice[0])],
            "dice": [[None if math.isnan(v) else v for v in row] for row in dice]}


def test_paired_difference_is_the_headline_difference_with_an_interval_around_it():
    rng = np.random.default_rng(1)
    random = rng.uniform(0.3, 0.8, size=(8, 3))
    random[2, 1] = math.nan  # an organ one case lacks: left out of that organ's mean
    pretrained = np.clip(random + rng.normal(0.06, 0.05, size=random.shape), 0, 1)
    result = paired_difference(table(pretrained.tolist()), table(random.tolist()), seed=0)

    def headline(m: np.ndarray) -> float:
        return float(np.mean([np.nanmean(m[:, k]) for k in range(m.shape[1])]))

    assert result.pretrained == pytest.approx(headline(pretrained), abs=1e-12)
    assert result.random == pytest.approx(headline(random), abs=1e-12)
    assert result.difference == pytest.approx(headline(pretrained) - headline(random), abs=1e-12)
    assert result.low < result.difference < result.high and result.low > 0, result
    assert result.n_cases == 8
    swapped = paired_difference(table(random.tolist()), table(pretrained.tolist()), seed=0)
    assert (swapped.low, swapped.high) == pytest.approx((-result.high, -result.low))


def test_the_bootstrap_is_paired():
    """A constant gain on every case is certain however much the cases differ; resampling the two
    inits independently would give a wide interval around it."""
    random = np.linspace(0.1, 0.9, 10)[:, None].repeat(2, axis=1)
    result = paired_difference(table((random + 0.05).tolist()), table(random.tolist()), seed=3)
    assert result.difference == pytest.approx(0.05)
    assert result.high - result.low < 1e-9


def test_scores_of_other_cases_cannot_be_paired():
    with pytest.raises(ValueError, match="different cases"):
        paired_difference(table([[0.5], [0.6]], ["a", "b"]), table([[0.5], [0.6]], ["a", "c"]), seed=0)


def test_mean_over_organs_leaves_out_absent_organs():
    matrix = np.array([[1.0, math.nan], [0.5, 0.2]])
    assert mean_over_organs(matrix) == pytest.approx((0.75 + 0.2) / 2)


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    """plan -> full-data fine-tuning -> few-label fine-tuning -> predict -> evaluate -> few-label
    scores, the demo's own steps at tiny settings: 5 training and 2 held-out 6 x 64 x 64 cases, a
    width-32 ViT, 2 iterations per run."""
    from meddinov3.demo import pipeline
    from meddinov3.demo.dataset import dataset_summary
    from meddinov3.demo.pretraining import save_random_backbone
    from meddinov3.synth.dataset import SynthSpec, write_dataset

    root = tmp_path_factory.mktemp("tiny_demo")
    config = demo_config("small", train_cases=5, test_cases=2, embed_dim=32, num_heads=1, patch_size=64, batch_size=2,
                         epochs=1, iterations_per_epoch=2, val_iterations_per_epoch=1, few_label_counts=(1, 2),
                         few_label_epochs=1)
    ws = Workspace(root, config)
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
            (root / name).mkdir()
            monkeypatch.setenv(name, str(root / name))
        monkeypatch.setenv("nnUNet_def_n_proc", "1")
        write_dataset(ws.raw_dataset, SynthSpec(cases=5, test_cases=2, seed=0, shape_zyx=(6, 64, 64)))
        # Stands in for the pretraining export: another draw of the same architecture.
        save_random_backbone(config.replace(seed=1), ws.pretrained_backbone)
        wanted = {"plan", "finetune", "train_few", "predict", "evaluate", "score_few"}
        steps = [Step("synth", "dataset", lambda context: dataset_summary(ws.raw_dataset))]
        steps += [step for step in pipeline.STEPS if step.name in wanted]
        records = run_steps(steps, ws, Console(file=io.StringIO()), force=False, capture=True)
        yield ws, {record.name: record for record in records}, steps


def test_both_inits_train_on_the_same_nested_subsets_in_their_own_splits_entries(tiny_demo):
    from meddinov3.nnunet.subsets import nested_subsets

    ws, records, _ = tiny_demo
    runs = records["train_few"].summary["runs"]
    training = sorted(c for c, case in records["synth"].summary["cases"].items() if case["split"] == "Tr")
    expected = {s.count: list(s.cases) for s in nested_subsets(training, [1, 2], seed=ws.config.seed)}
    assert [(run["count"], run["init"]) for run in runs] == [(1, "pretrained"), (1, "random"), (2, "pretrained"),
                                                            (2, "random")]
    splits = json.loads((ws.nnunet_folder("nnUNet_preprocessed") / ws.config.dataset_folder
                         / "splits_final.json").read_text(encoding="utf-8"))
    validation = sorted(set(training) - set(expected[2]))
    for run in runs:
        assert run["cases"] == expected[run["count"]], "both inits train on the subset compare would draw"
        entry = splits[run["fold"]]
        assert run["fold"] >= 5 and entry == {"train": expected[run["count"]], "val": validation}
        recorded = json.loads((ws.root / run["model_folder"] / f"fold_{run['fold']}" / "train_cases.json")
                              .read_text(encoding="utf-8"))
        assert recorded == entry
        assert (ws.root / run["model_folder"] / f"fold_{run['fold']}" / "checkpoint_final.pth").is_file()
        assert "labelsubsets" in run["model_folder"] and run["epochs"] * run["iterations_per_epoch"] == 2
    assert set(expected[1]) < set(expected[2])
    assert not set(records["synth"].summary["cases"]) - set(training) & {c for r in runs for c in r["cases"]}


def test_few_label_rows_are_the_evaluations_and_their_paired_difference(tiny_demo):
    ws, records, steps = tiny_demo
    rows = records["score_few"].summary["rows"]
    assert [(row["count"], row["all"]) for row in rows] == [(1, False), (2, False), (5, True)]
    for row in rows:
        means = {}
        for init in ("pretrained", "random"):
            folder = ws.evaluation(init) if row["all"] else ws.few_label_evaluation(row["count"], init)
            summary = json.loads((folder / "evaluation_summary.json").read_text(encoding="utf-8"))
            assert summary["n_cases"] == 2
            means[init] = summary["mean_over_labels"]["dice"]
        assert (row["pretrained"], row["random"]) == pytest.approx((means["pretrained"], means["random"]), abs=1e-12)
        assert row["difference"] == pytest.approx(means["pretrained"] - means["random"], abs=1e-12)
        assert row["low"] <= row["difference"] + 1e-12 and row["difference"] <= row["high"] + 1e-12
        assert row["n_cases"] == 2

    (ws.steps / "score_few.json").unlink()  # as if interrupted after its predictions
    again = run_steps(steps, ws, Console(file=io.StringIO()), force=False, capture=True)
    assert again[-1].summary["rows"] == rows and not again[-1].skipped


def test_a_rerun_reads_finished_few_label_runs_instead_of_training_them_again(tiny_demo):
    ws, records, steps = tiny_demo
    before = records["train_few"].summary["runs"]
    assert all(run["seconds"] is not None for run in before), "the first run trained them"
    for name in ("train_few", "score_few"):
        (ws.steps / f"{name}.json").unlink()  # as if interrupted before the step record was written
    again = {record.name: record for record in run_steps(steps, ws, Console(file=io.StringIO()), force=False,
                                                         capture=True)}
    runs = again["train_few"].summary["runs"]
    assert not again["train_few"].skipped and all(run["seconds"] is None for run in runs), "only read"
    keys = ("count", "init", "cases", "fold", "model_folder", "curves")
    assert [{k: run[k] for k in keys} for run in runs] == [{k: run[k] for k in keys} for run in before]
    assert again["score_few"].summary["rows"] == records["score_few"].summary["rows"]


def test_report_section_shows_every_count_in_its_table_and_figure(tiny_demo, tmp_path):
    """The report's few-label section: a table row per labelled-case count ("all n" last) with both
    inits' DSC, the difference and its interval as measured, and the figure of DSC against count."""
    from test_demo_report import decoded_data_png, images_in, png_size

    from meddinov3.demo import figures
    from meddinov3.demo.report import few_labels_section

    _, records, _ = tiny_demo
    rows = records["score_few"].summary["rows"]
    figure = figures.few_labels_figure(rows, tmp_path / "few_labels.png")
    html = "".join(few_labels_section(records, figure))
    for row in rows:
        assert table_row(row) in html, row
    assert html.count("<tr>") == len(rows) + 1 and "2 iterations each" in html
    (image,) = images_in(html)
    width, height = png_size(decoded_data_png(image["src"]))
    assert width >= 600 and height >= 200 and "labelled training cases" in image["alt"]


def table_row(row: dict) -> str:
    """A comparison row as the report's table shows it: count ("all n" for the full-data runs), both
    inits' DSC %, the difference and its interval in points."""
    cells = [f"all {row['count']}" if row["all"] else str(row["count"]), f"{100 * row['pretrained']:.1f}",
             f"{100 * row['random']:.1f}", f"{100 * row['difference']:+.1f}",
             f"{100 * row['low']:+.1f} to {100 * row['high']:+.1f}"]
    return "<td>" + "</td><td>".join(cells) + "</td>"


def check_few_label_results(out: Path, config: DemoConfig, rows: list[dict], printed: str) -> None:
    """The whole demo's few-label comparison (test_demo.py, slow): a finite row per count, the full-data
    row last, both inits on the same subset, each number the evaluations on disk and in the closing note."""
    assert [(row["count"], row["all"]) for row in rows] == [(c, False) for c in config.few_label_counts] + [
        (config.train_cases, True)]
    runs = json.loads((out / "steps" / "train_few.json").read_text(encoding="utf-8"))["summary"]["runs"]
    for count in config.few_label_counts:
        cases = [run["cases"] for run in runs if run["count"] == count]
        assert len(cases) == 2 and cases[0] == cases[1] and len(cases[0]) == count
    for row in rows:
        assert all(np.isfinite(row[key]) for key in ("pretrained", "random", "difference", "low", "high")), row
        means = {}
        for init in ("pretrained", "random"):
            folder = out / "evaluation" / init if row["all"] else out / "few_labels" / f"{row['count']}_cases" / "evaluation" / init
            evaluation = json.loads((folder / "evaluation_summary.json").read_text(encoding="utf-8"))
            assert evaluation["n_cases"] == config.test_cases
            means[init] = evaluation["mean_over_labels"]["dice"]
        assert row["difference"] == pytest.approx(means["pretrained"] - means["random"], abs=1e-12)
        assert row["low"] <= row["difference"] <= row["high"] and row["n_cases"] == config.test_cases
        measured = (f"{100 * means['pretrained']:.1f} % vs {100 * means['random']:.1f} %")
        if not row["all"]:
            measured = (f"{row['count']} labelled case{'' if row['count'] == 1 else 's'}: {measured} "
                        f"({100 * row['difference']:+.1f} points, 95 % interval {100 * row['low']:+.1f} to "
                        f"{100 * row['high']:+.1f})")
        assert measured in printed, measured
