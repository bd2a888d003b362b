"""Demo step 8: fine-tuning where labels are few, the setting a foundation model is for.

Both inits fine-tune on nested, seeded subsets of the training cases (the small preset: 1 and 2
labelled cases), drawn by `meddinov3.nnunet.subsets` as `compare --train-cases` draws them: the
same subset, schedule and learning rates for both inits, only the encoder's starting weights
differ. The pretraining corpus holds every training volume without labels, as an archive holds
unlabelled scans next to a few labelled ones.

Each subset trains inside nnU-Net as `compare --train-cases` trains it
(`meddinov3.nnunet.subset_folds`): an entry of its own in splits_final.json (training on the
subset; nnU-Net's per-epoch validation loss on the training cases outside the largest subset,
the same for every run) under the plans identifier nnUNetPlans_labelsubsets, and a fold folder
that records its cases. The held-out test cases are never seen in training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from meddinov3.demo.planning import PLANS
from meddinov3.demo.side_by_side import train_runs
from meddinov3.demo.steps import StepContext
from meddinov3.demo.training_runs import FineTuningRun, model_folder
from meddinov3.demo.workspace import INITS, Workspace


@dataclass(frozen=True)
class LabelledRun:
    count: int
    cases: tuple[str, ...]
    validation: tuple[str, ...]
    run: FineTuningRun


def training_cases(context: StepContext) -> list[str]:
    return sorted(name for name, case in context.summary("synth")["cases"].items() if case["split"] == "Tr")


def check_counts(counts: Sequence[int], n_cases: int) -> None:
    """Few means fewer than all: the runs need training cases left over for nnU-Net's validation."""
    if not counts or min(counts) < 1 or max(counts) >= n_cases:
        raise ValueError(f"few_label_counts {list(counts)}: each must be at least 1 and below the "
                         f"{n_cases} training cases (the full-data runs are the comparison with all of them)")


def labelled_runs(workspace: Workspace, cases: Sequence[str]) -> list[LabelledRun]:
    """Every (subset, init) run, smallest subset first; writes the splits entries and the subset plans."""
    from meddinov3.nnunet.subset_folds import ensure_crossval_split, fold_for_split, write_subset_plans
    from meddinov3.nnunet.subsets import nested_subsets

    config = workspace.config
    check_counts(config.few_label_counts, len(cases))
    dataset = config.dataset_folder
    # nnU-Net's 5-fold entries come first, as nnU-Net writes them, so the subset entries never take their indices.
    ensure_crossval_split(dataset, PLANS, config.configuration)
    subsets = nested_subsets(cases, list(config.few_label_counts), config.seed)
    validation = tuple(sorted(set(cases) - set(subsets[-1].cases)))
    plans = write_subset_plans(dataset, PLANS)
    runs = []
    for subset in subsets:
        fold = fold_for_split(dataset, subset.cases, validation)
        runs += [LabelledRun(subset.count, subset.cases, validation,
                             FineTuningRun(init, fold, plans, config.few_label_epochs)) for init in INITS]
    return runs


def train_few(context: StepContext) -> dict[str, Any]:
    from meddinov3.nnunet.subset_folds import claim_fold_folder

    workspace = context.workspace
    runs = labelled_runs(workspace, training_cases(context))
    for labelled in runs:
        claim_fold_folder(labelled.run.fold_folder(workspace), labelled.cases, labelled.validation)
    labels = [f"{r.count} case{'' if r.count == 1 else 's'}, {r.run.init}" for r in runs]
    trained = train_runs(context, [labelled.run for labelled in runs], labels)
    return {"runs": [{"count": labelled.count, "cases": list(labelled.cases), **summary}
                     for labelled, summary in zip(runs, trained)],
            "validation_cases": list(runs[0].validation), "seed": workspace.config.seed}


def train_few_outputs(workspace: Workspace) -> list[Path]:
    from meddinov3.nnunet.subset_folds import subset_plans_identifier

    return [model_folder(workspace, init, subset_plans_identifier(PLANS)) for init in INITS]


def runs_by_count(summary: dict[str, Any]) -> dict[int, dict[str, dict[str, Any]]]:
    """The training step's runs as count -> init -> run summary."""
    found: dict[int, dict[str, dict[str, Any]]] = {}
    for run in summary["runs"]:
        found.setdefault(int(run["count"]), {})[run["init"]] = run
    return found

