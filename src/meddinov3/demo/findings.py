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

# A few-label gain worth a foundation model (issue 22's target at the smallest labelled count).
PAYOFF_TARGET = 0.05
# Where the small preset reaches it on 2 CPU cores: measured with seed 0 and 8 held-out cases, the
# demo's settings except those named (README, "The demo"). Quoted by runs that pretrain for less
# and stay below the target; it is a record of those runs, not a result of the run that quotes it.
LONGER_PRETRAINING_ITERATIONS = 1800
LONGER_PRETRAINING = (
    "Measured on 2 cores with 1800 pretraining iterations: 1 labelled case +3.4 points (95 % interval +0.5 to +5.9) "
    "and 2 labelled cases +11.2 (+9.2 to +13.4) at the default 12 few-label epochs; 1 labelled case +9.7 (+6.1 to "
    "+13.3), 53.7 % vs 44.0 %, at 24 epochs. To see it: meddinov3 demo --pretrain-iterations 1800 "
    "--few-label-epochs 24, about 17 minutes on 2 idle cores (estimated from the default run's step times)."
)


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
    return (f"Fine-tuned on every training case for {iterations} iterations (about {cpu_minutes:.0f} CPU minutes per "
            f"init), the segmentation network reaches a mean organ DSC of {points(pre)} % from the pretrained "
            f"backbone and {points(rnd)} % from random initialisation ({signed_points(pre - rnd)} points).")


def labelled(row: Mapping[str, Any]) -> str:
    """A comparison row's training set in words: "1 labelled case", "all 20 labelled cases"."""
    count = int(row["count"])
    return f"{'all ' if row['all'] else ''}{count} labelled case{'' if count == 1 else 's'}"


def difference_phrase(row: Mapping[str, Any]) -> str:
    return (f"{signed_points(row['difference'])} points, 95 % interval {signed_points(row['low'])} to "
            f"{signed_points(row['high'])}")


def few_label_sentence(rows: Sequence[Mapping[str, Any]], iterations: int, n_test: int) -> str:
    """The few-label comparison (rows of `few_label_scores.comparison_rows`, the full-data row last)."""
    measured = "; ".join(f"{labelled(row)}: {points(row['pretrained'])} % pretrained vs {points(row['random'])} % "
                         f"random ({difference_phrase(row)})" for row in rows)
    return (f"Fine-tuned on few labelled cases ({iterations} iterations per run; the same seeded subset, schedule and "
            f"rates for both inits), mean organ DSC on the {n_test} held-out cases - {measured}. The intervals come "
            "from a paired bootstrap over the held-out cases: they say how much other held-out cases could move the "
            "difference, not how much another choice of labelled cases or another training run would.")


def shown_gain(row: Mapping[str, Any]) -> bool:
    """A gain a reader can rely on: at least the margin, and an interval that excludes no difference."""
    return row["difference"] >= GAIN_MARGIN and row["low"] > 0


def few_label_verdict(smallest: Mapping[str, Any]) -> str:
    if shown_gain(smallest):
        return f"Pretraining pays where labels are few: with {labelled(smallest)} the pretrained init leads ({difference_phrase(smallest)})."
    if smallest["high"] < 0:
        return f"With {labelled(smallest)} random initialisation does better ({difference_phrase(smallest)})."
    return f"With {labelled(smallest)} this run shows no clear gain from pretraining ({difference_phrase(smallest)})."


def verdict(outcome: PretrainingOutcome, probe: Mapping[str, Any], mean_dice: Mapping[str, float],
            rows: Sequence[Mapping[str, Any]]) -> str:
    """Whether this run shows a gain from pretraining, and which measurement shows it: fine-tuning
    on the fewest labelled cases (`rows[0]`), on all of them (`mean_dice`), the frozen-feature probe."""
    probe_gain = probe["mean_dice"]["pretrained"] - probe["mean_dice"]["random"]
    tuned_gain = mean_dice["pretrained"] - mean_dice["random"]
    everything = labelled(rows[-1])
    if tuned_gain >= GAIN_MARGIN:
        full = f"With {everything} fine-tuning shows a gain too ({signed_points(tuned_gain)} points)."
    elif tuned_gain > -GAIN_MARGIN:
        full = (f"With {everything} fine-tuning does not show a gain from pretraining ({signed_points(tuned_gain)} "
                "points): on synthetic organs the random init catches up within the run.")
    else:
        full = f"With {everything} fine-tuning favours random initialisation by {points(-tuned_gain)} points."
    if probe_gain >= GAIN_MARGIN:
        probe_part = (f"The frozen-feature probe shows what pretraining learned: the pretrained features segment "
                      f"{points(probe_gain)} points better than random ones.")
    elif shown_gain(rows[0]) or tuned_gain >= GAIN_MARGIN:
        probe_part = "The frozen features score no better than random ones, though."
    else:
        cause = ("the pretraining never left the uniform prediction, so its backbone is as good as untrained"
                 if not outcome.left_uniform else
                 "the pretraining left the uniform prediction, but not for long enough to give features that "
                 "segment better than random ones")
        probe_part = f"Neither fine-tuning nor the frozen-feature probe shows a gain from pretraining here: {cause}."
    return " ".join([few_label_verdict(rows[0]), full, probe_part] + payoff_note(outcome.iterations, rows[0]))


def payoff_note(pretrain_iterations: int, smallest: Mapping[str, Any]) -> list[str]:
    """Below the target with a shorter pretraining than the measured longer run: where the gain shows."""
    if smallest["difference"] >= PAYOFF_TARGET or pretrain_iterations >= LONGER_PRETRAINING_ITERATIONS:
        return []
    return [f"A gain of {points(PAYOFF_TARGET)} points or more with {labelled(smallest)} takes longer pretraining "
            f"than this run's {pretrain_iterations} iterations. {LONGER_PRETRAINING}"]
