"""`run_probe`: frozen backbones in, per-label DSC of a linear head on their features out.

    data = prepare_probe("Dataset901_SynthAbdomen", ProbeConfig(size=128))   # reads labels once
    result = run_probe(data, {"teacher": model.teacher.backbone})             # every N iterations
    result.scores["teacher"].mean_dice

Each backbone gets its own head, trained with the same seed on the same slices, so two results
differ only by the features. Pass `cache_dir` to keep features on disk between runs (worth it for
fixed weights such as a checkpoint or a random twin); without it they live in memory for the call.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path

import torch
from rich.progress import Progress
from torch import nn

from meddinov3.evaluation.reading import read_label_image
from meddinov3.evaluation.summary import summarize
from meddinov3.probe.cache import FeatureStore, cache_folder
from meddinov3.probe.classifier import train_head
from meddinov3.probe.config import ProbeConfig
from meddinov3.probe.preparation import ProbeData, prepare_probe
from meddinov3.devices import pick_device
from meddinov3.probe.features import backbone_device, backbone_features, check_size, feature_blocks
from meddinov3.probe.progress import progress_bars
from meddinov3.probe.result import BackboneScores, ProbeResult
from meddinov3.probe.scoring import score_case


def run_probe(
    dataset: str | os.PathLike | ProbeData,
    backbones: Mapping[str, nn.Module],
    config: ProbeConfig | None = None,
    *,
    device: str | torch.device = "auto",
    cache_dir: str | os.PathLike | None = None,
    show_progress: bool = False,
) -> ProbeResult:
    """Probe each backbone: features of the training slices and held-out volumes, a linear head
    per backbone, DSC per label on the held-out cases.

    Features are computed where each backbone's weights are (`device` for one without weights);
    the head trains and predicts on `device` ("auto": CUDA when available). With `cache_dir`,
    features are stored there and reused by any later call with the same weights.
    """
    if isinstance(dataset, ProbeData):
        if config is not None and config != dataset.config:
            raise ValueError("config differs from the one the ProbeData was prepared with")
        data = dataset
    else:
        data = prepare_probe(dataset, config, show_progress)
    head_device = pick_device(device)
    names = data.dataset.labels.names
    result = ProbeResult(
        dataset=data.dataset.folder,
        label_names={v: names[v] for v in data.dataset.labels.scored},
        config=data.config,
        train_slices=data.n_train_slices,
        test_cases=[case.name for case in data.dataset.test],
    )
    cache = None if cache_dir is None else Path(cache_dir)
    with progress_bars(show_progress) as progress:
        for name, backbone in backbones.items():
            result.scores[name] = probe_backbone(name, backbone, data, head_device, cache, progress)
    return result


def probe_backbone(
    name: str, backbone: nn.Module, data: ProbeData, head_device: torch.device, cache_dir: Path | None, progress: Progress
) -> BackboneScores:
    config, labels = data.config, data.dataset.labels.scored
    start = time.perf_counter()
    check_size(backbone, config.size)
    blocks = feature_blocks(backbone, config.layers)
    device = backbone_device(backbone, head_device)
    store = FeatureStore(None if cache_dir is None else cache_folder(cache_dir, backbone, blocks, config.size, device.type))

    task = progress.add_task(f"features {name}", total=data.n_train_slices + data.n_test_slices)
    train, test = backbone_features(backbone, data, store, blocks, device, lambda n: progress.advance(task, n))
    task = progress.add_task(f"training head {name}", total=config.steps)
    targets = [data.train_targets[case] for case in data.train_slices]

    def step_done(loss: float) -> None:
        progress.update(task, advance=1, description=f"training head {name}, loss {loss:.3f}")

    head, loss = train_head(train, targets, data.classes.num_classes, config, head_device, step_done)
    task = progress.add_task(f"scoring {name}", total=len(test))
    per_case = {}
    for case in data.dataset.test:
        reference = read_label_image(case.label, case.name)
        per_case[case.name] = score_case(head, test[case.name], reference, labels, config.tolerance_mm,
                                         config.extract_batch_size)
        progress.advance(task)

    summary = summarize(per_case, labels, data.dataset.labels.names, config.tolerance_mm)
    return BackboneScores(
        mean_dice=summary["mean_over_labels"]["dice"],
        dice={label: summary["labels"][str(label)]["dice"]["mean"] for label in labels},
        summary=summary,
        per_case=per_case,
        train_loss=loss,
        computed_slices=store.computed_slices,
        reused_slices=store.reused_slices,
        seconds=time.perf_counter() - start,
    )
