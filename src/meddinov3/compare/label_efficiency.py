"""Label efficiency: every method trained on nested subsets of a fold's training cases, scored alike.

    run_label_efficiency(ComparisonJob(dataset, methods, ...), counts=[1, 2, 5, "all"], seed=0)

For each count, each method trains (or reuses) one run on the same subset of the fold's training
cases (`subsets.py`; how a subset trains inside nnU-Net: `subset_folds.py`) and is scored on the
fold's held-out cases with the release's protocol, exactly as `compare` scores a method. 'all'
is the fold itself: the same run `compare` trains, reused when it is there. Writes, into the
output folder: subsets.json (the cases of every subset, before any training), per subset and
method the evaluation, label_efficiency.md / .csv (mean DSC and NSD with their spread over cases)
and label_efficiency.png (DSC against labelled cases). Finished runs and evaluations are reused,
interrupted trainings resume.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from meddinov3.compare.efficiency_plot import write_efficiency_plot
from meddinov3.compare.efficiency_table import EfficiencyContext, SubsetScores, csv_table, markdown_table
from meddinov3.compare.paper import paper_table
from meddinov3.compare.results import ComparisonError
from meddinov3.compare.runner import ComparisonJob, ComparisonRunner, link_references
from meddinov3.compare.spread import PER_CASE_CSV, per_case_means, spread_of
from meddinov3.folders import mark_stale
from meddinov3.io import atomic_write_text
from meddinov3.nnunet.subset_folds import (
    claim_fold_folder,
    ensure_crossval_split,
    fold_for_split,
    read_splits,
    write_subset_plans,
)
from meddinov3.nnunet.subsets import Subset, nested_subsets

SUBSETS_JSON = "subsets.json"
OUTPUT_NAMES = {"markdown": "label_efficiency.md", "csv": "label_efficiency.csv", "plot": "label_efficiency.png"}


@dataclass(frozen=True)
class PlannedRun:
    """Where one subset trains: nnU-Net fold index and plans identifier."""

    subset: Subset
    fold: int
    plans_identifier: str

    def to_dict(self) -> dict:
        return {**self.subset.to_dict(), "nnunet_fold": self.fold, "plans_identifier": self.plans_identifier}


@dataclass(frozen=True)
class LabelEfficiencyOutputs:
    folder: Path
    subsets: Path
    markdown: Path
    csv: Path
    plot: Path
    rows: list[SubsetScores]  # by count, then in the order of the job's methods


def default_output(dataset_name: str, fold: int) -> Path:
    from meddinov3.nnunet.paths import RESULTS, require_folders

    return require_folders(RESULTS)[RESULTS] / dataset_name / f"label_efficiency_fold{fold}"


def fold_cases(dataset_name: str, fold: int) -> tuple[list[str], list[str]]:
    """(training, held-out) cases of `fold` in nnU-Net's splits."""
    splits = read_splits(dataset_name)
    if not 0 <= fold < len(splits):
        raise ComparisonError(f"fold {fold} is not in nnU-Net's splits of {dataset_name} ({len(splits)} folds)")
    return sorted(splits[fold]["train"]), sorted(splits[fold]["val"])


def plan_runs(job: ComparisonJob, dataset_name: str, subsets: Sequence[Subset], held_out: Sequence[str]) -> list[PlannedRun]:
    """'all' trains the fold itself under the job's plans; each smaller subset a splits entry of its own."""
    runs = []
    subset_plans = None
    for subset in subsets:
        if subset.is_all:
            runs.append(PlannedRun(subset, job.fold, job.plans_identifier))
            continue
        subset_plans = subset_plans or write_subset_plans(dataset_name, job.plans_identifier)
        runs.append(PlannedRun(subset, fold_for_split(dataset_name, subset.cases, held_out), subset_plans))
    return runs


class LabelEfficiencyRunner:
    def __init__(self, job: ComparisonJob, counts: Sequence[int | str], seed: int, report: Callable[[str], None]):
        from meddinov3.datasets import dataset_folder_name

        self.job, self.seed, self.report = job, seed, report
        self.dataset_name = dataset_folder_name(job.dataset)
        self.output = Path(job.output) if job.output else default_output(self.dataset_name, job.fold)
        # Checks the methods, weights, recipe, plans and output folder before anything is written.
        self.base = ComparisonRunner(replace(job, output=self.output), report)
        ensure_crossval_split(self.dataset_name, job.plans_identifier, self.base.configuration(self.base.methods[0]))
        self.train_cases, self.held_out = fold_cases(self.dataset_name, job.fold)
        self.subsets = nested_subsets(self.train_cases, counts, seed)

    def runner_for(self, run: PlannedRun) -> ComparisonRunner:
        prefix = f"{run.subset.label} labelled case(s): "
        subset_job = replace(
            self.job, fold=run.fold, plans_identifier=run.plans_identifier, output=self.output / run.subset.folder_name
        )
        return ComparisonRunner(subset_job, report=lambda line: self.report(prefix + line))

    def write_subsets(self, runs: Sequence[PlannedRun]) -> Path:
        record = {
            "dataset": self.dataset_name,
            "fold": self.job.fold,
            "seed": self.seed,
            "training_cases": self.train_cases,
            "held_out_cases": self.held_out,
            "subsets": [run.to_dict() for run in runs],
        }
        return atomic_write_text(self.output / SUBSETS_JSON, json.dumps(record, indent=2) + "\n")

    def score(self, run: PlannedRun, references: Path) -> list[SubsetScores]:
        runner = self.runner_for(run)
        rows = []
        for method in runner.methods:
            if not run.subset.is_all:
                claim_fold_folder(runner.fold_folder(method), run.subset.cases, self.held_out)
            folder = runner.ensure_trained(method)
            scores = runner.evaluate(method, folder, references)
            per_case = runner.output / method.name / PER_CASE_CSV
            dsc, nsd = per_case_means(per_case, "dice"), per_case_means(per_case, "nsd")
            rows.append(SubsetScores(run.subset, scores, spread_of(dsc), spread_of(nsd), dsc))
        return rows

    def run(self) -> LabelEfficiencyOutputs:
        stale = mark_stale(self.output, OUTPUT_NAMES.values())
        runs = plan_runs(self.job, self.dataset_name, self.subsets, self.held_out)
        subsets_path = self.write_subsets(runs)
        references = link_references(self.dataset_name, self.held_out, self.base.file_ending, self.output / "references")
        rows = [row for run in runs for row in self.score(run, references)]
        outputs = self.write(rows, subsets_path)
        for path in stale:
            path.unlink()
        return outputs

    def write(self, rows: list[SubsetScores], subsets_path: Path) -> LabelEfficiencyOutputs:
        display_name = paper_table().display_name
        context = EfficiencyContext(self.dataset_name, self.job.fold, self.seed, len(self.train_cases))
        paths = {key: self.output / name for key, name in OUTPUT_NAMES.items()}
        atomic_write_text(paths["markdown"], markdown_table(context, rows, display_name))
        atomic_write_text(paths["csv"], csv_table(context, rows, display_name))
        write_efficiency_plot(context, rows, display_name, paths["plot"])
        return LabelEfficiencyOutputs(self.output, subsets_path, paths["markdown"], paths["csv"], paths["plot"], rows)


def run_label_efficiency(
    job: ComparisonJob, counts: Sequence[int | str], seed: int = 0, report: Callable[[str], None] = print
) -> LabelEfficiencyOutputs:
    """Train every method of `job` on nested subsets of `counts` training cases of `job.fold`
    (an int each, or 'all'), score them on the fold's held-out cases, write table and plot.
    `job.output` (default: $nnUNet_results/<dataset>/label_efficiency_fold<k>) holds everything."""
    return LabelEfficiencyRunner(job, counts, seed, report).run()
