"""Does pretraining from scratch learn? The tiny preset as shipped, judged by what learning means
for DINO: heads that left the uniform prediction, a teacher that tells images apart, and frozen
features that segment held-out CT better than the same architecture with random weights.

A falling total loss is not evidence (KoLeo alone falls from 10 to 0.04 while the DINO and iBOT
heads stay exactly uniform); the old tiny recipe fails every assertion below (DINO loss 1.000 ln K).
"""

import math

import pytest

from meddinov3.backbone import load_backbone
from meddinov3.pretrain.config import load_config
from meddinov3.pretrain.metrics import METRICS_NAME, read_metrics
from meddinov3.pretrain.loop import train
from meddinov3.probe import ProbeConfig, prepare_probe, run_probe
from meddinov3.probe.backbones import random_twin
from meddinov3.synth.dataset import SynthSpec, write_dataset

DINO_FRACTION_BOUND = 0.9  # issue 10: below 0.9 ln K by the end
PROBE_GAIN = 0.05  # mean organ DSC, pretrained minus random twin, absolute


@pytest.mark.slow
def test_tiny_from_scratch_pretraining_learns(tmp_path):
    result = train(load_config("tiny", [f"run.output_dir={tmp_path / 'run'}"]))
    monitored = [m for m in read_metrics(tmp_path / "run" / METRICS_NAME) if "dino_global_frac" in m]
    last = monitored[-1]
    assert last["iteration"] >= result.iteration - 10
    assert last["dino_global_frac"] < DINO_FRACTION_BOUND, last
    assert last["teacher_entropy"] < last["teacher_mean_entropy"] - 0.5, last
    assert last["prototypes_used"] > 4, last

    # Held-out synthetic cases that were never in the pretraining corpus (other seed).
    dataset = tmp_path / "Dataset990_Probe"
    write_dataset(dataset, SynthSpec(cases=6, test_cases=3, seed=1))
    pretrained = load_backbone(result.exported["backbone"]).eval()
    probe = run_probe(prepare_probe(dataset, ProbeConfig(size=128, max_train_slices=128)),
                      {"pretrained": pretrained, "random": random_twin(pretrained, seed=0)}, device="cpu")
    means = {name: probe.scores[name].mean_dice for name in ("pretrained", "random")}
    assert all(math.isfinite(v) for v in means.values())
    print(f"DINO {last['dino_global_frac']:.3f} ln K, teacher entropy {last['teacher_entropy']:.2f} / "
          f"{last['teacher_mean_entropy']:.2f} nats, probe mean DSC {means['pretrained']:.3f} vs {means['random']:.3f}")
    assert means["pretrained"] >= means["random"] + PROBE_GAIN, means
