"""Demo step 6: fine-tuning the multi-scale network from the pretrained backbone and, side by
side, from random weights, on every training case (fold "all"); the same network, schedule and
rates for both (`training_runs.py`), only the encoder's starting weights differ."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from meddinov3.demo.planning import PLANS
from meddinov3.demo.side_by_side import train_runs
from meddinov3.demo.steps import StepContext
from meddinov3.demo.training_runs import FOLD, FineTuningRun, model_folder
from meddinov3.demo.workspace import INITS, Workspace


def finetune(context: StepContext) -> dict[str, Any]:
    config = context.workspace.config
    runs = [FineTuningRun(init, FOLD, PLANS, config.epochs) for init in INITS]
    trained = train_runs(context, runs, [f"{init} init" for init in INITS])
    return {"runs": dict(zip(INITS, trained))}


def finetune_outputs(workspace: Workspace) -> list[Path]:
    return [model_folder(workspace, init) for init in INITS] + [workspace.random_backbone.parent]
