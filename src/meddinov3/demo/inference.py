"""Demo steps 8-9: segment the held-out cases with both fine-tuned models, then score them
with the release's protocol (DSC and NSD at 1 mm per organ, mean over organs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from meddinov3.demo.finetuning import FOLD, model_folder
from meddinov3.demo.steps import StepContext
from meddinov3.demo.terminal import polled
from meddinov3.demo.workspace import INITS, Workspace

NSD_TOLERANCE_MM = 1.0


def test_cases(workspace: Workspace) -> list[Path]:
    return sorted((workspace.raw_dataset / "imagesTs").glob("*.nii.gz"))


def finished_predictions(folder: Path) -> int:
    # Prediction writes `.partial_<case>` and renames it: only visible names are complete.
    return sum(1 for p in folder.glob("*.nii.gz") if not p.name.startswith(".")) if folder.is_dir() else 0


def predict(context: StepContext) -> dict[str, Any]:
    from meddinov3.nnunet.prediction import predict as segment

    workspace = context.workspace
    config = workspace.config
    count = len(test_cases(workspace))
    context.expect(count * len(INITS), "cases")
    written: dict[str, list[str]] = {}
    for done_inits, init in enumerate(INITS):
        output = workspace.predictions(init)

        def poll(output: Path = output, done_inits: int = done_inits, init: str = init) -> tuple[int, str]:
            return done_inits * count + finished_predictions(output), f"{init} init"

        with polled(context.progress, context.task, poll):
            paths = segment(
                workspace.raw_dataset / "imagesTs", output, model_folder(workspace, init), folds=(FOLD,),
                device=config.device, use_mirroring=config.mirroring, show_progress=False,
            )
        written[init] = [str(p) for p in paths]
    return {"predictions": written, "mirroring": config.mirroring}


def evaluate(context: StepContext) -> dict[str, Any]:
    from meddinov3.evaluation.folder import evaluate_folder

    workspace = context.workspace
    reference = workspace.raw_dataset / "labelsTs"
    context.expect(len(test_cases(workspace)) * len(INITS), "cases")
    summaries = {}
    for init in INITS:
        def progress(total: int) -> Callable[[str], None]:
            return lambda case: context.advance(status=case)

        report = evaluate_folder(
            workspace.predictions(init), reference, workspace.raw_dataset / "dataset.json",
            tolerance_mm=NSD_TOLERANCE_MM, workers=1, output_dir=workspace.evaluation(init), progress=progress,
        )
        summaries[init] = report.summary
    return {"summaries": summaries, "tolerance_mm": NSD_TOLERANCE_MM}


def predict_outputs(workspace: Workspace) -> list[Path]:
    return [workspace.predictions(init) for init in INITS]


def evaluate_outputs(workspace: Workspace) -> list[Path]:
    return [workspace.evaluation(init) for init in INITS]

