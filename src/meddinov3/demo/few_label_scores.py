"""Demo step 11: the few-label runs scored like the full-data ones, and the comparison that answers
"how much does pretraining help with few labelled cases?".

Every run of step 8 segments the same held-out cases and is scored with the release's protocol;
per labelled-case count (and for all training cases, from steps 9-10) the two inits' mean DSC
and their difference with a 95 % paired-bootstrap interval over the held-out cases
(`paired_bootstrap.py` says why that interval and what it leaves out).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from meddinov3.demo.few_labels import runs_by_count
from meddinov3.demo.inference import score_test_cases, segment_test_cases, test_cases
from meddinov3.demo.paired_bootstrap import case_dice, paired_difference
from meddinov3.demo.steps import StepContext
from meddinov3.demo.workspace import INITS, Workspace


def comparison_rows(per_count: Mapping[int, Mapping[str, Any]], full: Mapping[str, Any], n_train: int,
                    seed: int) -> list[dict[str, Any]]:
    """One row per labelled-case count, smallest first, the full-data runs last: both inits' mean
    DSC on the held-out cases and the paired difference (pretrained minus random) with its interval."""
    rows = [{"count": count, "all": False, **paired_difference(tables["pretrained"], tables["random"], seed).to_dict()}
            for count, tables in sorted(per_count.items())]
    rows.append({"count": n_train, "all": True, **paired_difference(full["pretrained"], full["random"], seed).to_dict()})
    return rows


def score_few(context: StepContext) -> dict[str, Any]:
    workspace = context.workspace
    by_count = runs_by_count(context.summary("train_few"))
    n_test = len(test_cases(workspace))
    context.expect(2 * n_test * len(by_count) * len(INITS), "predicting")
    per_count: dict[int, dict[str, Any]] = {}
    done = 0
    for count, runs in sorted(by_count.items()):
        for init in INITS:
            run = runs[init]
            predictions = workspace.few_label_predictions(count, init)
            segment_test_cases(context, Path(run["model_folder"]), run["fold"], predictions, done,
                               f"{count} case(s), {init} init")
            context.update(done + n_test, "scoring")
            report = score_test_cases(context, predictions, workspace.few_label_evaluation(count, init))
            per_count.setdefault(count, {})[init] = case_dice(report.rows)
            done += 2 * n_test
    n_train = sum(1 for case in context.summary("synth")["cases"].values() if case["split"] == "Tr")
    rows = comparison_rows(per_count, context.summary("evaluate")["case_dice"], n_train, workspace.config.seed)
    return {"rows": rows, "case_dice": {str(count): tables for count, tables in per_count.items()},
            "iterations": workspace.config.few_label_epochs * workspace.config.iterations_per_epoch,
            "n_test": n_test}


def score_few_outputs(workspace: Workspace) -> list[Path]:
    return [workspace.few_labels]
