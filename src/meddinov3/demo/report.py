"""Demo step 11: the self-contained HTML report (figures, tables, timings) from the step records."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from meddinov3.demo import figures
from meddinov3.demo.chance import chance_dice
from meddinov3.demo.findings import (
    PretrainingOutcome, few_label_sentence, finetuning_sentence, points, pretraining_outcome, pretraining_sentence,
    probe_sentence, verdict,
)
from meddinov3.demo.html import Report, figure_html, paragraph_html
from meddinov3.demo.report_tables import (
    cases_table, few_labels_table, finetuning_table, network_sentence, plan_table, pretraining_table,
    probe_description, probe_table, results_table, timings_table,
)
from meddinov3.demo.steps import StepContext, StepRecord
from meddinov3.demo.training_runs import model_folder
from meddinov3.demo.workspace import INITS, Workspace

CORPUS_EXAMPLES = 6


def organ_names(labels: Mapping[str, int]) -> dict[int, str]:
    return {int(value): name for name, value in labels.items()}


def corpus_examples(corpus_root: Path) -> list[tuple[str, np.ndarray]]:
    """A few synthetic slices spread over the corpus, and the real CT slice."""
    from meddinov3.curate import SliceCorpus

    corpus = SliceCorpus(corpus_root)
    real = [v for v, r in enumerate(corpus.records) if r.source.endswith(".npy")]
    synthetic = [v for v in range(len(corpus.records)) if v not in real]
    picks = [synthetic[int(i)] for i in np.linspace(0, len(synthetic) - 1, min(CORPUS_EXAMPLES, len(synthetic)))]
    examples = []
    for volume in picks:
        record = corpus.records[volume]
        name = Path(record.source).name.removesuffix("_0000.nii.gz")
        examples.append((f"{name}, slice {record.n_slices // 2}", corpus.volume(volume)[record.n_slices // 2]))
    examples += [("real CT slice", corpus.volume(v)[0]) for v in real]
    return examples


def machine_description(device: str) -> str:
    import torch

    where = torch.cuda.get_device_name(0) if device == "cuda" and torch.cuda.is_available() else "CPU"
    return (f"{where}; {os.cpu_count()} CPU cores visible, torch {torch.__version__} with "
            f"{torch.get_num_threads()} threads; Python {platform.python_version()} on {platform.system()}")


def layerscale_sentence(summary: Mapping[str, Any], initial: float) -> str:
    values = ", ".join(f"{title} {value:.1e}" for title, value in summary["layerscale"].items())
    return (f"Mean |LayerScale gamma| of the blocks: {values} (initialised at {initial:g}). Where it is small the "
            "blocks mostly pass the patch embedding on and both maps look alike. Trained weights (the released "
            "checkpoint: meddinov3 features --weights MedDINOv3-B-CT3M.pth) give maps that follow the anatomy, as "
            "in the paper's figures.")


def next_steps(workspace: Workspace) -> str:
    out = workspace.root
    lines = [
        f"Everything above is on disk under {out}: the dataset in nnU-Net format, the corpus, the "
        "pretrained backbone (pretrain/export/backbone.safetensors), both nnU-Net model folders, the "
        "predictions and evaluation_summary.json / evaluation_per_case.csv per init.",
        "Segment another volume: meddinov3 predict -i CASE.nii.gz -o seg/ -m "
        f"{model_folder(workspace, 'pretrained')} --fold all",
        "Run it on your data: meddinov3 convert (AMOS22, BTCV, KiTS23, LiTS) or any nnU-Net raw dataset, "
        "then meddinov3 plan, meddinov3 train, meddinov3 predict, meddinov3 evaluate; pretrain on your own "
        "archive with meddinov3 curate and meddinov3 pretrain. See the README.",
    ]
    return "".join(paragraph_html(line) for line in lines)


def first_case(dataset: Path, split: str) -> tuple[Path, Path]:
    """(image, label) of the first case of a split ("Tr" or "Ts") of an nnU-Net raw dataset."""
    image = sorted((dataset / f"images{split}").glob("*_0000.nii.gz"))[0]
    return image, dataset / f"labels{split}" / image.name.replace("_0000.nii.gz", ".nii.gz")


def build_report(context: StepContext) -> dict[str, Any]:
    from meddinov3.pretrain.metrics import METRICS_NAME, read_metrics
    from meddinov3.viz.learning import learning_figure

    workspace = context.workspace
    records = context.records
    folder = workspace.figures
    data = records["synth"].summary
    names = organ_names(data["labels"])
    context.expect(8, "figures")
    train_image, train_label = first_case(workspace.raw_dataset, "Tr")
    test_image, test_label = first_case(workspace.raw_dataset, "Ts")
    drawn = {"dataset": figures.dataset_figure(train_image, train_label, names, folder / "dataset.png")}
    context.advance()
    drawn["corpus"] = figures.corpus_figure(corpus_examples(workspace.corpus), folder / "corpus.png")
    context.advance()
    metrics = read_metrics(workspace.pretrain / METRICS_NAME)
    drawn["pretraining"] = learning_figure(metrics, folder / "pretraining.png")
    context.advance()
    curves = {init: records["finetune"].summary["runs"][init]["curves"] for init in INITS}
    drawn["finetuning"] = figures.finetuning_figure(curves, folder / "finetuning.png")
    context.advance()
    few = records["score_few"].summary
    drawn["few_labels"] = figures.few_labels_figure(few["rows"], folder / "few_labels.png")
    context.advance()
    drawn["predictions"] = figures.predictions_figure(
        test_image, test_label, {init: workspace.predictions(init) / test_label.name for init in INITS}, names,
        folder / "predictions.png")
    context.advance()
    chance = chance_dice(workspace, len(names))
    context.advance(status="html")
    summaries = records["evaluate"].summary["summaries"]
    n_test = sum(1 for c in data["cases"].values() if c["split"] == "Ts")
    outcome = pretraining_outcome(metrics)
    report = compose(workspace, records, drawn, summaries, chance, names, n_test, outcome)
    report.write(workspace.report)
    context.advance()
    probe = records["probe"].summary
    mean_dice = {i: summaries[i]["mean_over_labels"]["dice"] for i in INITS}
    return {"report": str(workspace.report), "figures": {k: str(v) for k, v in drawn.items()},
            "mean_dice": mean_dice, "mean_nsd": {i: summaries[i]["mean_over_labels"]["nsd"] for i in INITS},
            "chance_dice": float(np.nanmean(list(chance.values()))),
            "dino_fraction": outcome.dino_fraction, "probe_mean_dice": probe["mean_dice"],
            "few_labels": few["rows"], "verdict": verdict(outcome, probe, mean_dice, few["rows"])}


def summary_paragraphs(records: Mapping[str, StepRecord], summaries: Mapping[str, Mapping[str, Any]],
                       chance: Mapping[int, float], n_test: int, outcome: PretrainingOutcome) -> str:
    """The findings in the order the evidence goes: pretraining monitors, probe, fine-tuning, verdict."""
    probe = records["probe"].summary
    mean_dice = {init: summaries[init]["mean_over_labels"]["dice"] for init in INITS}
    runs = records["finetune"].summary["runs"]
    trained = runs["pretrained"]
    measured = [runs[init]["cpu_seconds"] for init in INITS]
    cpu_minutes = (records["finetune"].cpu_seconds if None in measured else sum(measured)) / len(INITS) / 60
    few = records["score_few"].summary
    sentences = [
        pretraining_sentence(outcome),
        probe_sentence(probe),
        few_label_sentence(few["rows"], few["iterations"], few["n_test"]),
        finetuning_sentence(mean_dice, trained["epochs"] * trained["iterations_per_epoch"], cpu_minutes)
        + f" Labelling voxels at random with the training organ frequencies would score "
        f"{points(float(np.nanmean(list(chance.values()))))} %; all numbers are on the {n_test} held-out cases.",
        verdict(outcome, probe, mean_dice, few["rows"]),
    ]
    return "".join(paragraph_html(sentence) for sentence in sentences)


def compose(workspace: Workspace, records: Mapping[str, StepRecord], drawn: Mapping[str, Path],
            summaries: Mapping[str, Mapping[str, Any]], chance: Mapping[int, float],
            names: Mapping[int, str], n_test: int, outcome: PretrainingOutcome) -> Report:
    config = workspace.config
    data = records["synth"].summary
    corpus = records["curate"].summary
    probe = records["probe"].summary
    depth = config.backbone_overrides()["depth"]
    report = Report(f"MedDINOv3 demo ({config.preset} preset)")
    report.add("Summary", summary_paragraphs(records, summaries, chance, n_test, outcome))
    report.add(
        "1. What pretraining put into the features (meddinov3 probe)",
        paragraph_html(probe_description(probe, depth)),
        probe_table(probe),
        figure_html(Path(probe["figure"]), "Linear-probe DSC per organ on the held-out cases, frozen backbones."),
    )
    report.add(
        "2. Is the pretraining learning? (meddinov3 pretrain)",
        paragraph_html("DINOv3 stage-1 objective: DINO loss on class tokens with a Sinkhorn-Knopp teacher, iBOT "
                       "masked-patch loss and KoLeo, EMA teacher; the teacher backbone is exported. A falling total "
                       "loss proves nothing (KoLeo alone falls): the DINO and iBOT losses must drop below ln K, their "
                       "value for a uniform prediction over the K prototypes, and the teacher's entropy per sample "
                       "must fall below the entropy of its batch-mean prediction (it tells images apart)."),
        pretraining_table(records["pretrain"].summary, outcome),
        figure_html(drawn["pretraining"], "Learning monitors from metrics.jsonl: losses as a fraction of ln K "
                    "(1 = uniform prediction), teacher entropy per sample and of the batch mean."),
    )
    report.add("3. Fine-tuning on few labelled cases (meddinov3 train on subsets, as compare --train-cases)",
               *few_labels_section(records, drawn["few_labels"]))
    report.add(
        "4. Fine-tuning comparison on all training cases (meddinov3 train, predict, evaluate)",
        results_table(summaries, chance, names),
        paragraph_html("DSC and NSD as in the MedDINOv3 release (MONAI definitions, NSD tolerance 1 mm, "
                       "the label's voxel spacing); per organ the mean over test cases, then the mean over organs. "
                       "These numbers come from a minutes-long run of a narrow ViT on synthetic data: they show "
                       "the pipeline working end to end, not the paper's accuracy, whose gain from pretraining "
                       "(AMOS22 DSC 78.39 from random init, 87.38 for MedDINOv3) comes from 100,000 pretraining "
                       "iterations on 3.87 million slices.", note=True),
        figure_html(drawn["predictions"], "A held-out test slice: reference organs and both fine-tuned models' "
                    "predictions (soft-tissue window W400/L40)."),
        paragraph_html(network_sentence(depth)),
        finetuning_table(records["train_few"].summary["runs"]
                         + [records["finetune"].summary["runs"][init] for init in INITS], config.train_cases),
        figure_html(drawn["finetuning"], "Per-epoch losses and nnU-Net's pseudo Dice (on sampled training patches)."),
    )
    report.add(
        "5. Synthetic CT dataset (meddinov3 synth)",
        paragraph_html(f"{config.train_cases} training and {config.test_cases} held-out abdominal CT volumes "
                       f"in nnU-Net raw format, seed {config.seed}: organ shapes, Hounsfield units, texture, noise and "
                       f"anisotropic spacing drawn per case. nnU-Net's dataset integrity check: {data['integrity_check']}."),
        figure_html(drawn["dataset"], "A training volume in the soft-tissue window (W400/L40): axial slice, "
                    "its organ labels, and a coronal reformat."),
        cases_table(data["cases"]),
    )
    report.add(
        "6. Pretraining corpus (meddinov3 curate)",
        paragraph_html(f"The training volumes plus the bundled real CT slice ({corpus['real_slice']}), curated "
                       f"like CT-3M: {corpus['volumes']} volumes, {corpus['slices']} axial slices at "
                       f"{corpus['size']} x {corpus['size']}. The held-out volumes are not in the corpus."),
        figure_html(drawn["corpus"], "Curated slices (stored in HU, shown W400/L40); the last one is the real CT slice."),
    )
    report.add(
        "7. nnU-Net plan (meddinov3 plan)",
        paragraph_html(f"nnU-Net's fingerprint and plans, plus the high-resolution configuration "
                       f"{config.configuration}: patch {config.patch_size} x {config.patch_size}, spacing scaled so the "
                       "patch keeps the 2d configuration's field of view (the paper's 2d_896, at demo size)."),
        plan_table(records["plan"].summary),
    )
    report.add(
        "8. Features on the real CT slice (meddinov3 features)",
        paragraph_html("Last-block patch features of the pretrained and of the random backbone on the bundled real "
                       "CT slice: first three principal components as RGB (body only), and cosine similarity of all "
                       "patches to a query patch (red dot). " + layerscale_sentence(records["features"].summary, config.layerscale_init)),
        figure_html(Path(records["features"].summary["figure"]), "PCA and patch-similarity maps."),
    )
    report.add(
        "Timings",
        paragraph_html(machine_description(config.device)),
        timings_table(records),
    )
    report.add("Next steps", next_steps(workspace))
    return report


def few_labels_section(records: Mapping[str, StepRecord], figure: Path) -> list[str]:
    trained, few = records["train_few"].summary, records["score_few"].summary
    subsets = "; ".join(f"{run['count']}: {', '.join(run['cases'])}" for run in trained["runs"] if run["init"] == "random")
    return [
        few_labels_table(few["rows"]),
        paragraph_html(f"Both inits fine-tune on the same nested subsets of the training cases, drawn by a hash of seed "
                       f"{trained['seed']} and the case names as compare --train-cases draws them ({subsets}), "
                       f"{few['iterations']} iterations each with the learning rates of the full-data runs; the last "
                       "row is the full-data comparison below. The pretraining corpus held every training volume, "
                       "without labels. Interval: 95 % percentile interval of the difference in mean organ DSC over "
                       "resamples of the held-out cases, both inits resampled together (paired). It covers which "
                       "cases are held out, not which cases are labelled nor nnU-Net's unseeded patch sampling: two "
                       "fine-tunings of the same init differ by about a point."),
        figure_html(figure, "Mean organ DSC on the held-out cases against labelled training cases (log axis), and "
                    "the difference pretrained minus random with its 95 % paired-bootstrap interval."),
    ]


def report_outputs(workspace: Workspace) -> list[Path]:
    return [workspace.report]
