"""The sentences a demo run writes from its measured numbers (report summary, verdict, closing
note): which measurement shows a gain from pretraining, with few and with all labelled cases, and
where the gain shows when this run's pretraining is too short for it."""

from __future__ import annotations

import pytest

from meddinov3.demo.findings import (
    PretrainingOutcome, few_label_sentence, pretraining_outcome, pretraining_sentence, probe_sentence, verdict,
)
from meddinov3.demo.pipeline import closing_note


def outcome(fraction: float) -> PretrainingOutcome:
    return PretrainingOutcome(200, fraction, 2.0, 5.0)


def probe_summary(pretrained: float, random: float) -> dict:
    return {"mean_dice": {"pretrained": pretrained, "random": random},
            "dice": {"pretrained": {"liver": pretrained, "aorta": pretrained},
                     "random": {"liver": random, "aorta": random}}}


def few_rows(low: float, high: float, difference: float = 0.08) -> list[dict]:
    """A comparison with 1 labelled case (pretrained leads by `difference`) and the full-data row."""
    return [{"count": 1, "all": False, "pretrained": 0.40 + difference, "random": 0.40, "difference": difference,
             "low": low, "high": high, "n_cases": 8},
            {"count": 20, "all": True, "pretrained": 0.70, "random": 0.705, "difference": -0.005, "low": -0.02,
             "high": 0.01, "n_cases": 8}]


def test_findings_say_which_measurement_shows_the_pretraining_gain():
    tuned_equal = {"pretrained": 0.70, "random": 0.705}
    few_shown = verdict(outcome(0.6), probe_summary(0.55, 0.40), tuned_equal, few_rows(0.03, 0.12))
    assert few_shown.startswith("Pretraining pays where labels are few: with 1 labelled case the pretrained init "
                                "leads (+8.0 points, 95 % interval +3.0 to +12.0).")
    assert "With all 20 labelled cases fine-tuning does not show a gain" in few_shown
    assert "random init catches up" in few_shown and "segment 15.0 points better" in few_shown
    unclear = verdict(outcome(0.6), probe_summary(0.55, 0.40), tuned_equal, few_rows(-0.01, 0.12))
    assert unclear.startswith("With 1 labelled case this run shows no clear gain from pretraining (+8.0 points, "
                              "95 % interval -1.0 to +12.0)")
    small = verdict(outcome(0.6), probe_summary(0.55, 0.40), tuned_equal, few_rows(0.001, 0.03, difference=0.01))
    assert "no clear gain" in small, "a gain below the margin is not read as one, whatever its interval"
    assert small.endswith("--few-label-epochs 24, about 17 minutes on 2 idle cores (estimated from the default run's step "
                          "times).") and \
        "A gain of 5.0 points or more with 1 labelled case takes longer pretraining than this run's 200" in small
    assert "longer pretraining" not in few_shown, "a gain at the target needs no pointer elsewhere"
    longer = PretrainingOutcome(1800, 0.6, 2.0, 5.0)
    assert "longer pretraining" not in verdict(longer, probe_summary(0.55, 0.40), tuned_equal,
                                               few_rows(0.001, 0.03, difference=0.01)), "it was that run"
    worse = verdict(outcome(0.6), probe_summary(0.55, 0.40), tuned_equal, few_rows(-0.12, -0.03, difference=-0.08))
    assert worse.startswith("With 1 labelled case random initialisation does better (-8.0 points")
    both = verdict(outcome(0.6), probe_summary(0.55, 0.40), {"pretrained": 0.75, "random": 0.70}, few_rows(0.03, 0.12))
    assert "With all 20 labelled cases fine-tuning shows a gain too (+5.0 points)" in both
    no_probe = verdict(outcome(0.6), probe_summary(0.40, 0.41), tuned_equal, few_rows(0.03, 0.12))
    assert no_probe.endswith("The frozen features score no better than random ones, though.")
    neither = verdict(outcome(0.999), probe_summary(0.40, 0.41), tuned_equal, few_rows(-0.01, 0.02, 0.0))
    assert "Neither fine-tuning nor the frozen-feature probe" in neither and "never left the uniform" in neither
    learned_but_flat = verdict(outcome(0.6), probe_summary(0.40, 0.41), {"pretrained": 0.60, "random": 0.70},
                               few_rows(-0.01, 0.02, 0.0))
    assert "favours random initialisation by 10.0 points" in learned_but_flat
    assert "left the uniform prediction, but" in learned_but_flat

    sentence = few_label_sentence(few_rows(0.03, 0.12), 480, 8)
    assert "(480 iterations per run;" in sentence and "on the 8 held-out cases" in sentence
    assert ("1 labelled case: 48.0 % pretrained vs 40.0 % random (+8.0 points, 95 % interval +3.0 to +12.0); "
            "all 20 labelled cases: 70.0 % pretrained vs 70.5 % random (-0.5 points") in sentence
    note = closing_note({"dino_fraction": 0.8, "probe_mean_dice": {"pretrained": 0.55, "random": 0.40},
                         "mean_dice": tuned_equal, "few_labels": few_rows(0.03, 0.12), "verdict": few_shown})
    assert ("pretrained vs random init - 1 labelled case: 48.0 % vs 40.0 % (+8.0 points, 95 % interval +3.0 to "
            "+12.0); all training cases: 70.0 % vs 70.5 %.") in note
    assert note.endswith(few_shown)

    assert "55.0 % with the pretrained backbone and 40.0 % with its random twin (+15.0 points; better on 2 of 2" \
        in probe_sentence(probe_summary(0.55, 0.40))
    assert "did not learn" in pretraining_sentence(outcome(0.99))
    assert "left the uniform prediction" in pretraining_sentence(outcome(0.97))
    metrics = [{"iteration": 0, "loss": 9.0}, {"iteration": 9, "dino_global_frac": 0.8, "teacher_entropy": 1.5,
                                                 "teacher_mean_entropy": 4.0}]
    assert pretraining_outcome(metrics) == PretrainingOutcome(10, 0.8, 1.5, 4.0)
    noisy = [{"iteration": i, "dino_global_frac": f, "teacher_entropy": 1.0, "teacher_mean_entropy": 2.0}
             for i, f in enumerate([1.0, 0.9, 0.88, 0.86, 0.9, 0.82])]
    assert pretraining_outcome(noisy).dino_fraction == pytest.approx(0.872), "the mean of the last five logs"
    with pytest.raises(ValueError, match="dino_global_frac"):
        pretraining_outcome([{"iteration": 0, "loss": 9.0}])
