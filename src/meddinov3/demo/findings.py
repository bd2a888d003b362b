"""What a demo run found, in sentences written from its measured numbers.

Three measurements answer "did pretraining help?" at different depths: the pretraining monitors
(did the self-distillation heads leave the uniform prediction?), the linear probe (are the frozen
features better than random ones?) and the fine-tuning comparison (does the better start survive
a few minutes of supervised training?). The report's summary and the demo's closing note are
built here, so that they always say what this run measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from meddinov3.pretrain.monitors import UNIFORM_FRACTION

# Mean-DSC differences smaller than this are not read as a gain either way: two fine-tuning runs of
# the small preset from the same init differ by about a point (nnU-Net's sampling and augmentation
# are not seeded), and the probe's head by less.
GAIN_MARGIN = 0.02


@dataclass(frozen=True)
class PretrainingOutcome:
    iterations: int
    dino_fraction: float  # final DINO (global crops) loss / ln K; 1.0 = uniform prediction
    teacher_entropy: float  # nats, per sample
    teacher_mean_entropy: float  # nats, of the batch-mean prediction

    @property
    def left_uniform(self) -> bool:
        return self.dino_fraction < UNIFORM_FRACTION


# Each monitor is measured on one batch (the DINO fraction moves by about +-0.02 between logs), so
# the end of a run is read as the mean of its last logs.
FINAL_LOGS = 5


def pretraining_outcome(metrics: Sequence[Mapping[str, float]]) -> PretrainingOutcome:
    """The monitors at the end of a pretraining run (metrics.jsonl rows): means of the last
    `FINAL_LOGS` logged values."""
    logged = [m for m in metrics if "dino_global_frac" in m]
    if not logged:
        raise ValueError("the pretraining metrics hold no DINO loss fraction (dino_global_frac)")
    final = logged[-FINAL_LOGS:]

    def mean(key: str) -> float:
        return sum(float(m.get(key, math.nan)) for m in final) / len(final)

    return PretrainingOutcome(int(metrics[-1]["iteration"]) + 1, mean("dino_global_frac"), mean("teacher_entropy"),
                              mean("teacher_mean_entropy"))


def points(value: float | None) -> str:
    """A DSC (or NSD) in [0, 1] as percent points with one decimal; "n/a" when there is none."""
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def signed_points(value: float) -> str:
    return f"{100 * value:+.1f}"


def pretraining_sentence(outcome: PretrainingOutcome) -> str:
    state = ("the heads left the uniform prediction" if outcome.left_uniform else
             f"the heads still predict uniformly (at or above {UNIFORM_FRACTION} ln K): this pretraining did not learn")
    return (f"Pretraining ({outcome.iterations} iterations) ended with a DINO loss of {outcome.dino_fraction:.3f} "
            f"x ln K (1 = uniform prediction over the prototypes) and a teacher entropy of "
            f"{outcome.teacher_entropy:.2f} nats per sample against {outcome.teacher_mean_entropy:.2f} for the batch "
            f"mean: {state}.")


def probe_sentence(probe: Mapping[str, Any]) -> str:
    pre, rnd = probe["mean_dice"]["pretrained"], probe["mean_dice"]["random"]
    organs = probe["dice"]["pretrained"]
    better = sum(organs[name] > probe["dice"]["random"][name] + GAIN_MARGIN for name in organs)
    return (f"A linear probe on the frozen features scores a mean organ DSC of {points(pre)} % with the pretrained "
            f"backbone and {points(rnd)} % with its random twin ({signed_points(pre - rnd)} points; better on "
            f"{better} of {len(organs)} organs).")


def finetuning_sentence(mean_dice: Mapping[str, float], iterations: int, cpu_minutes: float) -> str:
    pre, rnd = mean_dice["pretrained"], mean_dice["random"]
    return (f"Fine-tuned for {iterations} iterations (about {cpu_minutes:.0f} CPU minutes per init), the "
            f"segmentation network reaches a mean organ DSC of {points(pre)} % from the pretrained backbone and "
            f"{points(rnd)} % from random initialisation ({signed_points(pre - rnd)} points).")


def verdict(outcome: PretrainingOutcome, probe: Mapping[str, Any], mean_dice: Mapping[str, float]) -> str:
    """Whether this run shows a gain from pretraining, and which measurement shows it."""
    probe_gain = probe["mean_dice"]["pretrained"] - probe["mean_dice"]["random"]
    tuned_gain = mean_dice["pretrained"] - mean_dice["random"]
    if tuned_gain >= GAIN_MARGIN:
        shown = "Fine-tuning shows a gain from pretraining"
        return shown + (", and so do the frozen features." if probe_gain >= GAIN_MARGIN else
                        ", although the frozen features score no better than random ones.")
    tuned = ("does not show a gain from pretraining" if tuned_gain > -GAIN_MARGIN else
             f"favours random initialisation by {points(-tuned_gain)} points")
    if probe_gain >= GAIN_MARGIN:
        return (f"Fine-tuning for these few CPU minutes {tuned}: on synthetic organs the random init catches up "
                f"within the run. The evidence that pretraining learned is the probe: the frozen pretrained "
                f"features segment {points(probe_gain)} points better than random ones.")
    cause = ("the pretraining never left the uniform prediction, so its backbone is as good as untrained"
             if not outcome.left_uniform else
             "the pretraining left the uniform prediction, but not for long enough to give features that segment "
             "better than random ones")
    return f"Neither fine-tuning (which {tuned}) nor the frozen-feature probe shows a gain from pretraining here: {cause}."
