"""Demo steps 9-10: segment the held-out cases with both fine-tuned models, then score them
with the release's protocol (DSC and NSD at 1 mm per organ, mean over organs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from meddinov3.demo.paired_bootstrap import case_dice
from meddinov3.demo.steps import StepContext
from meddinov3.demo.terminal import polled
from meddinov3.demo.training_runs import FOLD, model_folder
from meddinov3.demo.workspace import INITS, Workspace

NSD_TOLERANCE_MM = 1.0


def test_cases(workspace: Workspace) -> list[Path]:
    return sorted((workspace.raw_dataset / "imagesTs").glob("*.nii.gz"))


def finished_predictions(folder: Path) -> int:
    # Prediction writes `.partial_<case>` and renames it: only visible names are complete.
    return sum(1 for p in folder.glob("*.nii.gz") if not p.name.startswith(".")) if folder.is_dir() else 0


def segment_test_cases(context: StepContext, model: Path, fold: int | str, output: Path, done_before: int,
                       status: str) -> list[Path]:
    """Predict every held-out case with one trained fold (finished cases are kept), the step's
    bar counting from `done_before`."""
    from meddinov3.nnunet.prediction import predict as segment

    config = context.workspace.config

    def poll() -> tuple[int, str]:
        return done_before + finished_predictions(output), status

    with polled(context.progress, context.task, poll):
        return segment(context.workspace.raw_dataset / "imagesTs", output, model, folds=(fold,), device=config.device,
                       use_mirroring=config.mirroring, show_progress=False)


def score_test_cases(context: StepContext, predictions: Path, output: Path) -> Any:
    """The release's DSC / NSD of the predictions against the held-out references (a FolderReport)."""
    from meddinov3.evaluation.folder import evaluate_folder

    raw = context.workspace.raw_dataset

    def progress(total: int) -> Callable[[str], None]:
        return lambda case: context.advance(status=case)

    return evaluate_folder(predictions, raw / "labelsTs", raw / "dataset.json", tolerance_mm=NSD_TOLERANCE_MM,
                           workers=1, output_dir=output, progress=progress)


def predict(context: StepContext) -> dict[str, Any]:
    workspace = context.workspace
    count = len(test_cases(workspace))
    context.expect(count * len(INITS), "cases")
    written = {}
    for done_inits, init in enumerate(INITS):
        paths = segment_test_cases(context, model_folder(workspace, init), FOLD, workspace.predictions(init),
                                   done_inits * count, f"{init} init")
        written[init] = [str(p) for p in paths]
    return {"predictions": written, "mirroring": workspace.config.mirroring}


def evaluate(context: StepContext) -> dict[str, Any]:
    workspace = context.workspace
    context.expect(len(test_cases(workspace)) * len(INITS), "cases")
    summaries, per_case = {}, {}
    for init in INITS:
        report = score_test_cases(context, workspace.predictions(init), workspace.evaluation(init))
        summaries[init], per_case[init] = report.summary, case_dice(report.rows)
    return {"summaries": summaries, "case_dice": per_case, "tolerance_mm": NSD_TOLERANCE_MM}


def predict_outputs(workspace: Workspace) -> list[Path]:
    return [workspace.predictions(init) for init in INITS]


def evaluate_outputs(workspace: Workspace) -> list[Path]:
    return [workspace.evaluation(init) for init in INITS]
