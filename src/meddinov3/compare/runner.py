"""Run the comparison: per method, train the fold (or reuse a finished run), evaluate its held-out
predictions with the release's protocol, then write the table (Markdown, CSV) and the plot.

The paper scores fold 0 of nnU-Net's 5-fold split: every method trains on the fold's training
cases and is scored on nnU-Net's own validation predictions of the held-out cases, against the
reference labels nnU-Net keeps in `gt_segmentations`. A finished run is reused; an interrupted
one is resumed from its latest checkpoint; an evaluation is redone only when its predictions
changed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from meddinov3.compare.paper import paper_table
from meddinov3.compare.plot import write_comparison_plot
from meddinov3.compare.recipes import TrainedRecipe, recipes_markdown, trained_recipe
from meddinov3.compare.results import ComparisonError, MethodScores, read_scores
from meddinov3.compare.table import ComparisonContext, csv_table, markdown_table
from meddinov3.folders import mark_stale, writable_folder
from meddinov3.io import atomic_write_text

NSD_TOLERANCE_MM = 1.0  # the paper's NSD
SUMMARY_JSON = "evaluation_summary.json"
OUTPUT_NAMES = {
    "markdown": "comparison.md",
    "csv": "comparison.csv",
    "plot": "comparison.png",
    "recipes": "training_recipes.json",
}


@dataclass
class ComparisonJob:
    dataset: str
    methods: Sequence[str]
    fold: int = 0
    configuration: str | None = None  # None: each method's default configuration
    weights: dict[str, str] = field(default_factory=dict)  # method -> pretrained backbone file
    recipe: str = "default"  # or "release" (see meddinov3.nnunet.methods)
    epochs: int | None = None
    iterations_per_epoch: int | None = None
    val_iterations_per_epoch: int | None = None
    device: str = "cuda"
    output: Path | None = None  # default: $nnUNet_results/<dataset>/comparison_fold<fold>
    eval_workers: int | None = None
    plans_identifier: str = "nnUNetPlans"
    show_progress: bool = True


@dataclass(frozen=True)
class ComparisonOutputs:
    folder: Path
    markdown: Path
    csv: Path
    plot: Path
    recipes: Path
    scores: list[MethodScores]
    trained_recipes: list[TrainedRecipe]


def validation_cases(dataset_name: str, fold: int) -> list[str]:
    """The fold's held-out cases, from the split file nnU-Net wrote when the first method trained."""
    from meddinov3.nnunet.paths import PREPROCESSED, require_folders

    path = require_folders(PREPROCESSED)[PREPROCESSED] / dataset_name / "splits_final.json"
    try:
        splits = json.loads(path.read_text(encoding="utf-8"))
        return sorted(splits[fold]["val"])
    except (OSError, ValueError, IndexError, KeyError, TypeError) as error:
        raise ComparisonError(f"{path}: no validation cases for fold {fold} ({error})") from error


def has_predictions(folder: Path, cases: Sequence[str], file_ending: str) -> bool:
    return all((folder / f"{case}{file_ending}").is_file() for case in cases)


def link_references(dataset_name: str, cases: Sequence[str], file_ending: str, target: Path) -> Path:
    """A folder with exactly the held-out cases' reference labels (symbolic links, else copies)."""
    import shutil

    from meddinov3.nnunet.paths import PREPROCESSED, require_folders

    source = require_folders(PREPROCESSED)[PREPROCESSED] / dataset_name / "gt_segmentations"
    target.mkdir(parents=True, exist_ok=True)
    wanted = {f"{case}{file_ending}" for case in cases}
    for stale in target.iterdir():
        if stale.name not in wanted:
            stale.unlink()
    for name in sorted(wanted):
        reference, link = source / name, target / name
        if not reference.is_file():
            raise ComparisonError(f"{reference}: reference label of a held-out case is missing")
        if link.is_symlink() or link.exists():
            link.unlink()
        try:
            link.symlink_to(reference.resolve())
        except OSError:
            shutil.copyfile(reference, link)
    return target


class ComparisonRunner:
    def __init__(self, job: ComparisonJob, report: Callable[[str], None] = print):
        from meddinov3.nnunet.methods import check_recipe_switch, get_method
        from meddinov3.datasets import dataset_folder_name
        from meddinov3.nnunet.paths import PREPROCESSED, RESULTS, require_folders

        check_recipe_switch(job.recipe)
        if not job.methods:
            raise ComparisonError("name at least one method to compare")
        unknown_weights = sorted(set(job.weights) - set(job.methods))
        if unknown_weights:
            raise ComparisonError(f"--weights given for method(s) not compared: {', '.join(unknown_weights)}")
        self.job = job
        self.report = report
        self.methods = [get_method(name) for name in job.methods]
        folders = require_folders(PREPROCESSED, RESULTS)
        self.dataset_name = dataset_folder_name(job.dataset)
        self.dataset_json_path = folders[PREPROCESSED] / self.dataset_name / "dataset.json"
        if not self.dataset_json_path.is_file():
            raise ComparisonError(f"{self.dataset_json_path} not found: run `meddinov3 plan {job.dataset}` first")
        self.file_ending = json.loads(self.dataset_json_path.read_text(encoding="utf-8"))["file_ending"]
        self.output = Path(job.output) if job.output else folders[RESULTS] / self.dataset_name / f"comparison_fold{job.fold}"
        writable_folder(self.output, "--output")  # before hours of training, not after

    def configuration(self, method) -> str:
        return self.job.configuration or method.default_configuration

    def fold_folder(self, method) -> Path:
        from meddinov3.nnunet.training import model_folder

        folder = model_folder(self.dataset_name, method.trainer, self.job.plans_identifier, self.configuration(method))
        return folder / f"fold_{self.job.fold}"

    def ensure_trained(self, method) -> Path:
        """Train, resume or only validate, whichever the fold folder needs; returns the folder."""
        from meddinov3.nnunet.training import TrainingJob, run_training

        folder = self.fold_folder(method)
        finished = (folder / "checkpoint_final.pth").is_file()
        if finished:
            self._check_recipe(method, folder)
        predicted = finished and self._validation_complete(folder)
        if predicted:
            self.report(f"{method.name}: reusing the finished run in {folder}")
            return folder
        resumable = any((folder / name).is_file() for name in ("checkpoint_latest.pth", "checkpoint_best.pth"))
        if method.needs_weights and not finished and method.name not in self.job.weights:
            raise ComparisonError(
                f"{method.name} trains on a pretrained backbone: pass --weights {method.name}=PATH (or a Hub name)"
            )
        action = "validating" if finished else ("resuming" if resumable else "training")
        self.report(f"{method.name}: {action} fold {self.job.fold} ({self.configuration(method)}) in {folder}")
        run_training(
            TrainingJob(
                dataset=self.dataset_name,
                method=method.name,
                configuration=self.configuration(method),
                fold=self.job.fold,
                weights=self.job.weights.get(method.name),
                recipe=self.job.recipe,
                epochs=self.job.epochs,
                iterations_per_epoch=self.job.iterations_per_epoch,
                val_iterations_per_epoch=self.job.val_iterations_per_epoch,
                device=self.job.device,
                continue_training=resumable and not finished,
                validation_only=finished,
                plans_identifier=self.job.plans_identifier,
                show_progress=self.job.show_progress,
            )
        )
        return folder

    def _check_recipe(self, method, folder: Path) -> None:
        """A finished run is reused only if it trained with the recipe asked for."""
        if method.release_recipe is None:
            return
        found = trained_recipe(method.name, folder).recipe
        if found != self.job.recipe:
            raise ComparisonError(
                f"{method.name}: the finished run in {folder} trained with --recipe {found}, not {self.job.recipe}; "
                "compare it with that recipe, or move it away (or use another nnUNet_results) to train again"
            )

    def _validation_complete(self, folder: Path) -> bool:
        try:
            cases = validation_cases(self.dataset_name, self.job.fold)
        except ComparisonError:
            return False
        return has_predictions(folder / "validation", cases, self.file_ending)

    def evaluate(self, method, fold_folder: Path, references: Path) -> MethodScores:
        """Score the fold's validation predictions; an up-to-date earlier evaluation is reused."""
        from meddinov3.evaluation import evaluate_folder

        predictions = fold_folder / "validation"
        summary = self.output / method.name / SUMMARY_JSON
        if not self._is_current(summary, predictions, references):
            self.report(f"{method.name}: evaluating {predictions}")
            evaluate_folder(
                predictions, references, self.dataset_json_path, NSD_TOLERANCE_MM,
                self.job.eval_workers, summary.parent,
            )
        return read_scores(method.name, summary)

    def _is_current(self, summary: Path, predictions: Path, references: Path) -> bool:
        if not summary.is_file():
            return False
        recorded = json.loads(summary.read_text(encoding="utf-8"))
        inputs = [*predictions.glob(f"*{self.file_ending}"), *references.glob(f"*{self.file_ending}")]
        if not inputs:
            return False
        newest = max(os.stat(p).st_mtime for p in inputs)
        return (
            summary.stat().st_mtime >= newest
            and recorded.get("prediction_folder") == str(predictions.resolve())
            and recorded.get("reference_folder") == str(references.resolve())
        )

    def run(self) -> ComparisonOutputs:
        # An earlier table stays only as *.stale until this run has written its own.
        stale = mark_stale(self.output, OUTPUT_NAMES.values())
        folders = {method.name: self.ensure_trained(method) for method in self.methods}
        cases = validation_cases(self.dataset_name, self.job.fold)
        references = link_references(self.dataset_name, cases, self.file_ending, self.output / "references")
        scores = [self.evaluate(method, folders[method.name], references) for method in self.methods]
        recipes = [trained_recipe(method.name, folders[method.name]) for method in self.methods]
        outputs = self.write(scores, recipes)
        for path in stale:
            path.unlink()
        return outputs

    def write(self, scores: list[MethodScores], recipes: list[TrainedRecipe]) -> ComparisonOutputs:
        paper = paper_table()
        context = ComparisonContext(self.dataset_name, self.job.fold, paper.dataset_for(self.dataset_name))
        paths = {key: self.output / name for key, name in OUTPUT_NAMES.items()}
        markdown = markdown_table(context, scores, paper) + "\n" + "\n".join(recipes_markdown(recipes, paper.display_name))
        atomic_write_text(paths["markdown"], markdown + "\n")
        atomic_write_text(paths["csv"], csv_table(context, scores, paper))
        atomic_write_text(paths["recipes"], json.dumps([r.to_dict() for r in recipes], indent=2) + "\n")
        write_comparison_plot(context, scores, paper, paths["plot"])
        return ComparisonOutputs(
            self.output, paths["markdown"], paths["csv"], paths["plot"], paths["recipes"], scores, recipes
        )


def run_comparison(job: ComparisonJob, report: Callable[[str], None] = print) -> ComparisonOutputs:
    return ComparisonRunner(job, report).run()
