"""The demo pipeline: synthetic CT -> corpus -> pretraining -> linear probe -> plan -> fine-tuning (pretrained and
random init, on all and on few labelled cases) -> prediction -> evaluation -> feature maps -> HTML report."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from rich.console import Console

from meddinov3.demo.config import DemoConfig
from meddinov3.demo.corpus import corpus_outputs, curate_corpus
from meddinov3.demo.dataset import dataset_outputs, synthesize
from meddinov3.demo.features import feature_maps, features_outputs
from meddinov3.demo.few_label_scores import score_few, score_few_outputs
from meddinov3.demo.few_labels import train_few, train_few_outputs
from meddinov3.demo.findings import difference_phrase, labelled, points
from meddinov3.demo.finetuning import finetune, finetune_outputs
from meddinov3.demo.inference import evaluate, evaluate_outputs, predict, predict_outputs
from meddinov3.demo.planning import plan, plan_outputs
from meddinov3.demo.pretraining import pretrain, pretrain_outputs
from meddinov3.demo.probing import probe, probe_outputs
from meddinov3.demo.report import build_report, report_outputs
from meddinov3.demo.steps import Step, StepRecord, run_steps
from meddinov3.demo.workspace import DemoSetupError, Workspace, point_nnunet_here
from meddinov3.io import atomic_write_text

STEPS = (
    Step("synth", "synthesize CT volumes", synthesize, dataset_outputs),
    Step("curate", "curate the pretraining corpus", curate_corpus, corpus_outputs),
    Step("pretrain", "stage-1 pretraining of the ViT", pretrain, pretrain_outputs),
    Step("probe", "linear probe of the frozen backbones", probe, probe_outputs),
    Step("plan", "nnU-Net plan and preprocess", plan, plan_outputs),
    Step("finetune", "fine-tune from the pretrained backbone and from random init", finetune, finetune_outputs),
    Step("train_few", "fine-tune both inits on few labelled cases", train_few, train_few_outputs),
    Step("predict", "segment the held-out cases", predict, predict_outputs),
    Step("evaluate", "evaluate DSC / NSD", evaluate, evaluate_outputs),
    Step("score_few", "segment and score with few labelled cases", score_few, score_few_outputs),
    Step("features", "feature maps on the real CT slice", feature_maps, features_outputs),
    Step("report", "write the HTML report", build_report, report_outputs),
)


def check_settings(workspace: Workspace, force: bool) -> None:
    """An output folder holds one demo: rerunning with other settings needs --force or a new --out."""
    wanted = json.loads(json.dumps(workspace.config.to_dict()))  # as stored: tuples become lists
    if workspace.settings.is_file() and not force:
        stored = json.loads(workspace.settings.read_text(encoding="utf-8"))
        if stored != wanted:
            changed = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
            raise DemoSetupError(
                f"{workspace.root} holds a demo run with other settings ({', '.join(changed)} differ); "
                "use --force to redo it with these settings, or another --out"
            )
    atomic_write_text(workspace.settings, json.dumps(wanted, indent=2) + "\n")


def set_library_defaults(config: DemoConfig) -> None:
    """nnU-Net worker counts and compilation, for a short run (read when nnU-Net is imported)."""
    os.environ.setdefault("nnUNet_def_n_proc", str(max(1, min(os.cpu_count() or 1, 4))))
    # torch.compile pays off over hours of training, not over a few minutes.
    os.environ.setdefault("nnUNet_compile", "false")


def run_demo(out: Path, config: DemoConfig, force: bool = False, console: Console | None = None,
             capture: bool = True) -> list[StepRecord]:
    """Run (or resume) every step into `out`; returns the step records (the last one: the report)."""
    workspace = Workspace(Path(out).resolve(), config)
    workspace.root.mkdir(parents=True, exist_ok=True)
    check_settings(workspace, force)
    point_nnunet_here(workspace)
    set_library_defaults(config)
    console = console or Console()
    start = time.perf_counter()
    records = run_steps(STEPS, workspace, console, force, capture)
    console.print(f"[bold green]demo finished[/] in {time.perf_counter() - start:.0f} s; report: {workspace.report}")
    console.print(closing_note(records[-1].summary), highlight=False)
    return records


def closing_note(report: dict) -> str:
    """The run's answer to "did pretraining help?", from the report step's summary."""
    probe, tuned = report["probe_mean_dice"], report["mean_dice"]
    few = "; ".join(f"{labelled(row)}: {points(row['pretrained'])} % vs {points(row['random'])} % "
                    f"({difference_phrase(row)})" for row in report["few_labels"] if not row["all"])
    return (f"pretraining: final DINO loss {report['dino_fraction']:.3f} x ln K; linear probe mean DSC "
            f"{points(probe['pretrained'])} % pretrained vs {points(probe['random'])} % random twin.\n"
            f"fine-tuned mean DSC, pretrained vs random init - {few}; all training cases: "
            f"{points(tuned['pretrained'])} % vs {points(tuned['random'])} %.\n"
            f"{report['verdict']}")
