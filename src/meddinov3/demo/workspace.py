"""Where every demo artefact lives under --out, and nnU-Net's folder variables pointed there.

    OUT/
      demo.json                  the settings of this output folder (a rerun must match them)
      steps/<step>.json          one record per finished step: seconds, summary (resume marker)
      logs/<step>.log            everything the step's libraries printed
      nnUNet_raw/Dataset901_SynthAbdomen/        synthetic CT, nnU-Net raw format
      nnUNet_preprocessed/, nnUNet_results/      nnU-Net's own folders
      corpus/                    curated slices (meddinov3 curate)
      pretrain/                  stage-1 run; pretrain/export/backbone.safetensors
      random_init/backbone.safetensors           the same ViT, randomly initialised
      probe/                     linear probe of both: results.json, probe_dsc.png, feature_cache/
      predictions/<init>/        label maps of the held-out cases
      evaluation/<init>/         evaluation_per_case.csv, evaluation_summary.json
      few_labels/<n>_cases/predictions|evaluation/<init>/   the same for the runs on n labelled cases
      figures/*.png              report.html embeds them
      report.html
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from meddinov3.demo.config import DemoConfig
from meddinov3.errors import InputError

NNUNET_FOLDERS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
INITS = ("pretrained", "random")


class DemoSetupError(InputError, RuntimeError):
    """The output folder or the process cannot run the demo as asked; the message says why."""


@dataclass(frozen=True)
class Workspace:
    root: Path
    config: DemoConfig

    def nnunet_folder(self, name: str) -> Path:
        return self.root / name

    @property
    def raw_dataset(self) -> Path:
        return self.nnunet_folder("nnUNet_raw") / self.config.dataset_folder

    @property
    def corpus(self) -> Path:
        return self.root / "corpus"

    @property
    def pretrain(self) -> Path:
        return self.root / "pretrain"

    @property
    def pretrained_backbone(self) -> Path:
        return self.pretrain / "export" / "backbone.safetensors"

    @property
    def random_backbone(self) -> Path:
        return self.root / "random_init" / "backbone.safetensors"

    @property
    def probe(self) -> Path:
        return self.root / "probe"

    def backbone(self, init: str) -> Path:
        return self.pretrained_backbone if init == "pretrained" else self.random_backbone

    def predictions(self, init: str) -> Path:
        return self.root / "predictions" / init

    def evaluation(self, init: str) -> Path:
        return self.root / "evaluation" / init

    @property
    def few_labels(self) -> Path:
        return self.root / "few_labels"

    def few_label_predictions(self, count: int, init: str) -> Path:
        return self.few_labels / f"{count}_cases" / "predictions" / init

    def few_label_evaluation(self, count: int, init: str) -> Path:
        return self.few_labels / f"{count}_cases" / "evaluation" / init

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def steps(self) -> Path:
        return self.root / "steps"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def settings(self) -> Path:
        return self.root / "demo.json"


def point_nnunet_here(workspace: Workspace) -> None:
    """Set nnUNet_raw / _preprocessed / _results to folders under --out, before nnU-Net is imported.

    nnU-Net copies these variables into module constants when first imported, so a process that
    imported it earlier with other folders would silently write elsewhere: that is refused.
    """
    wanted = {name: str(workspace.nnunet_folder(name).resolve()) for name in NNUNET_FOLDERS}
    if "nnunetv2.paths" in sys.modules:
        paths = sys.modules["nnunetv2.paths"]
        stale = [name for name, folder in wanted.items() if getattr(paths, name, None) != folder]
        if stale:
            raise DemoSetupError(
                f"nnU-Net was imported in this process before the demo set {', '.join(stale)}; "
                "run the demo in a fresh process (`meddinov3 demo`)"
            )
    for name, folder in wanted.items():
        Path(folder).mkdir(parents=True, exist_ok=True)
        os.environ[name] = folder
