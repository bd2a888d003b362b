"""The demo report's tables and the sentences that describe its settings, from the step records;
recipe numbers are read from the recipe (`meddinov3.nnunet.methods`), not restated."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from meddinov3.demo import figures
from meddinov3.demo.findings import PretrainingOutcome, points, signed_points
from meddinov3.demo.html import table_html
from meddinov3.demo.steps import StepRecord
from meddinov3.demo.workspace import INITS


def results_table(summaries: Mapping[str, Mapping[str, Any]], chance: Mapping[int, float],
                  names: Mapping[int, str]) -> str:
    headers = ["organ"] + [f"DSC % ({figures.INIT_TITLES[i]})" for i in INITS] + \
        [f"NSD % 1 mm ({figures.INIT_TITLES[i]})" for i in INITS] + ["DSC % chance"]
    rows = []
    for label in sorted(k for k in names if k > 0):
        entries = [summaries[i]["labels"][str(label)] for i in INITS]
        rows.append([names[label]] + [points(e["dice"]["mean"]) for e in entries]
                    + [points(e["nsd"]["mean"]) for e in entries] + [points(chance[label])])
    means = [summaries[i]["mean_over_labels"] for i in INITS]
    chance_mean = float(np.nanmean(list(chance.values())))
    rows.append(["mean over organs"] + [points(m["dice"]) for m in means] + [points(m["nsd"]) for m in means]
                + [points(chance_mean)])
    return table_html(headers, rows)


def few_labels_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Per labelled-case count: both inits' mean DSC on the held-out cases, the difference and its interval."""
    body = [[f"all {row['count']}" if row["all"] else row["count"], points(row["pretrained"]), points(row["random"]),
             signed_points(row["difference"]), f"{signed_points(row['low'])} to {signed_points(row['high'])}"]
            for row in rows]
    return table_html(["labelled training cases", "DSC % pretrained init", "DSC % random init",
                       "difference (points)", "95 % interval (paired bootstrap over held-out cases)"], body)


def cases_table(cases: Mapping[str, Mapping[str, Any]]) -> str:
    rows = [[name, "train" if c["split"] == "Tr" else "test", " x ".join(map(str, c["shape_zyx"])),
             " x ".join(f"{s:.2f}" for s in c["spacing_xyz"])] for name, c in cases.items()]
    return table_html(["case", "split", "shape (Z x Y x X)", "spacing mm (x, y, z)"], rows)


def timings_table(records: Mapping[str, StepRecord]) -> str:
    rows = [[r.title, f"{r.seconds:.1f}", f"{r.cpu_seconds:.1f}", "earlier run" if r.skipped else "this run"]
            for r in records.values()]
    rows.append(["total", f"{sum(r.seconds for r in records.values()):.1f}",
                 f"{sum(r.cpu_seconds for r in records.values()):.1f}", ""])
    return table_html(["step", "wall-clock seconds", "CPU seconds", "when"], rows)


def seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def finetuning_table(runs: Sequence[Mapping[str, Any]], n_train: int) -> str:
    """Every fine-tuning run (few-label runs carry their count): its settings, how far it got, and its
    time (n/a: trained by an earlier run)."""
    rows = []
    for run in runs:
        curves = run["curves"]
        cases = f"all {n_train}" if run.get("count") is None else run["count"]
        rows.append([figures.INIT_TITLES[run["init"]], cases, f"--method {run['method']}", f"{run['encoder_lr']:g}",
                     f"{run['decoder_lr']:g}", f"{run['epochs']} x {run['iterations_per_epoch']} x batch {run['batch_size']}",
                     f"{curves['train_losses'][-1]:.3f}", points(curves["mean_fg_dice"][-1]), seconds(run["seconds"]),
                     seconds(run["cpu_seconds"])])
    return table_html(["init", "labelled cases", "meddinov3 train", "encoder lr", "decoder lr", "epochs x iterations",
                       "last train loss", "last pseudo DSC %", "seconds", "CPU seconds"], rows)


def pretraining_table(summary: Mapping[str, Any], outcome: PretrainingOutcome) -> str:
    s = summary["settings"]
    arch = s["model"]["arch_overrides"]
    rows = [
        ["backbone", f"{s['model']['arch']} with width {arch['embed_dim']}, {arch['num_heads']} heads, {arch['depth']} blocks"],
        ["iterations x batch", f"{s['optim']['iterations']} x {s['optim']['global_batch_size']}"],
        ["crops", f"2 global {s['crops']['global_sizes'][0]} px + {s['crops']['n_local']} local {s['crops']['local_sizes'][0]} px"],
        ["prototypes K", f"{s['model']['head_prototypes']}"],
        ["peak lr", f"{s['optim']['lr']:g}"],
        ["total loss first -> last", f"{summary['first_loss']:.3f} -> {summary['last_loss']:.3f}"],
        ["DINO loss / ln K, mean of the last logs", f"{outcome.dino_fraction:.3f}"],
        ["teacher entropy per sample / of the batch mean, mean of the last logs",
         f"{outcome.teacher_entropy:.2f} / {outcome.teacher_mean_entropy:.2f} nats"],
    ]
    return table_html(["setting", "value"], rows)


def plan_table(summary: Mapping[str, Any]) -> str:
    rows = [
        ["configuration", summary["configuration"]],
        ["patch size", " x ".join(map(str, summary["patch_size"]))],
        ["spacing mm", " x ".join(f"{s:.3f}" for s in summary["spacing"])],
        ["batch size", summary["batch_size"]],
        ["nnU-Net 2d patch size (base)", " x ".join(map(str, summary["base_2d_patch_size"]))],
        ["normalisation", ", ".join(summary["normalization"])],
    ]
    return table_html(["plan", "value"], rows)


def probe_table(probe: Mapping[str, Any]) -> str:
    dice = probe["dice"]
    rows = [[organ, points(dice["pretrained"][organ]), points(dice["random"][organ]),
             signed_points(dice["pretrained"][organ] - dice["random"][organ])] for organ in dice["pretrained"]]
    means = probe["mean_dice"]
    rows.append(["mean over organs", points(means["pretrained"]), points(means["random"]),
                 signed_points(means["pretrained"] - means["random"])])
    return table_html(["organ", "DSC % (pretrained, frozen)", "DSC % (random twin, frozen)", "difference (points)"],
                      rows)


def probe_description(probe: Mapping[str, Any], depth: int) -> str:
    config = probe["config"]
    layers = "the last block's" if config["layers"] == "last" else f"blocks {blocks(depth)} concatenated"
    return (f"DINOv3's dense linear evaluation (meddinov3 probe): both backbones frozen, {layers} patch features "
            f"of {probe['train_slices']} training slices at {config['size']} px, one linear head per backbone "
            f"({config['steps']} AdamW steps, same seed and slices), DSC per organ on the held-out volumes. The "
            "random twin is the backbone the random-init fine-tuning starts from, so the difference is what "
            "pretraining put into the features.")


def blocks(depth: int) -> str:
    """The blocks the multi-scale decoder (and the multi-scale probe) reads, as a list in words."""
    from meddinov3.segmentation import default_interaction_layers

    return ", ".join(map(str, default_interaction_layers(depth)))


def rate(value: float) -> str:
    return f"{value:.0e}".replace("e-0", "e-")


def network_sentence(depth: int) -> str:
    """The fine-tuned network and the paper's recipe it trains with, as `meddinov3 train` runs it."""
    from meddinov3.nnunet.methods import get_method

    recipe = get_method("meddinov3").recipe
    return (f"The multi-scale network (ViT blocks {blocks(depth)} -> Primus decoder) with the paper's recipe: "
            f"{recipe.optimizer} betas {recipe.betas}, weight decay {recipe.weight_decay:g}, separate encoder and "
            f"decoder rates decaying linearly to zero, drop-path {recipe.backbone['drop_path_rate']:g}, Dice + CE "
            "loss, no deep supervision, nnU-Net's 2D augmentation; trained on all training cases (fold 'all'). Only "
            "the encoder's starting weights differ between the two runs. The rates are raised from the recipe's "
            f"{rate(recipe.lr)} / {rate(recipe.encoder_lr)} (set for 250,000 iterations) for a run of minutes.")
