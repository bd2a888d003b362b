"""`meddinov3 demo`: the step runner (resume, --force, failures), its guards, the chance level of
the results table, and (slow) the whole demo as the README runs it, checked in a browser."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from meddinov3.demo.chance import expected_random_dice
from meddinov3.demo.config import DemoConfig, demo_config
from meddinov3.demo.pipeline import STEPS, check_settings
from meddinov3.demo.steps import DemoStepError, Step, run_steps
from meddinov3.demo.workspace import DemoSetupError, Workspace


# The small preset's promise on its held-out cases, for both inits.
MEAN_DSC_FLOOR = 0.6
ORGAN_DSC_FLOOR = 0.3


def quiet_console() -> Console:
    return Console(file=io.StringIO())


def toy_steps(calls: list[str], fail_at: str | None = None) -> list[Step]:
    """Two steps writing files; the second reads what the first recorded."""

    def first(context):
        calls.append("first")
        out = context.workspace.root / "first.txt"
        out.write_text("1")
        context.expect(3, "units")
        for _ in range(3):
            context.advance()
        return {"value": 41}

    def second(context):
        calls.append("second")
        print("library chatter before the failure")
        if fail_at == "second":
            raise ValueError("disk on fire")
        (context.workspace.root / "second.txt").write_text("2")
        return {"value": context.summary("first")["value"] + 1}

    return [
        Step("first", "first step", first, lambda ws: [ws.root / "first.txt"]),
        Step("second", "second step", second, lambda ws: [ws.root / "second.txt"]),
    ]


def workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path, DemoConfig(preset="test"))


def test_steps_run_once_and_resume_from_their_records(tmp_path):
    calls: list[str] = []
    records = run_steps(toy_steps(calls), workspace(tmp_path), quiet_console(), force=False, capture=True)
    assert calls == ["first", "second"]
    assert [r.summary["value"] for r in records] == [41, 42]
    assert all(r.seconds >= 0 and r.cpu_seconds >= 0 and not r.skipped for r in records)
    stored = json.loads((tmp_path / "steps" / "second.json").read_text(encoding="utf-8"))
    assert stored["summary"] == {"value": 42}

    again = run_steps(toy_steps(calls), workspace(tmp_path), quiet_console(), force=False, capture=True)
    assert calls == ["first", "second"], "finished steps must not run again"
    assert [r.skipped for r in again] == [True, True]
    assert again[1].summary == {"value": 42}


def test_force_deletes_outputs_and_reruns(tmp_path):
    calls: list[str] = []
    run_steps(toy_steps(calls), workspace(tmp_path), quiet_console(), force=False, capture=True)
    (tmp_path / "second.txt").write_text("stale")
    run_steps(toy_steps(calls), workspace(tmp_path), quiet_console(), force=True, capture=True)
    assert calls == ["first", "second", "first", "second"]
    assert (tmp_path / "second.txt").read_text(encoding="utf-8") == "2"


def test_failed_step_names_itself_shows_its_log_and_resumes(tmp_path):
    calls: list[str] = []
    with pytest.raises(DemoStepError) as error:
        run_steps(toy_steps(calls, fail_at="second"), workspace(tmp_path), quiet_console(), force=False, capture=True)
    message = str(error.value)
    assert "'second'" in message and "disk on fire" in message
    assert "library chatter before the failure" in message, "the log tail belongs in the error"
    assert "library chatter" in (tmp_path / "logs" / "second.log").read_text(encoding="utf-8")
    assert not (tmp_path / "steps" / "second.json").exists()

    run_steps(toy_steps(calls), workspace(tmp_path), quiet_console(), force=False, capture=True)
    assert calls == ["first", "second", "second"], "only the failed step runs again"


def test_output_folder_keeps_its_settings(tmp_path):
    check_settings(Workspace(tmp_path, demo_config("small")), force=False)
    check_settings(Workspace(tmp_path, demo_config("small")), force=False)  # its own settings, read back from JSON
    other = Workspace(tmp_path, demo_config("small", seed=5))
    with pytest.raises(DemoSetupError, match="seed"):
        check_settings(other, force=False)
    check_settings(other, force=True)
    assert json.loads((tmp_path / "demo.json").read_text(encoding="utf-8"))["seed"] == 5


def test_demo_command_passes_the_schedule_options_into_the_settings(tmp_path):
    """`meddinov3 demo --pretrain-iterations N --few-label-epochs M` (the README's longer run) reach the
    run's settings: against a folder holding the default run they are named as what differs."""
    from typer.testing import CliRunner

    from meddinov3.cli import app

    check_settings(Workspace(tmp_path, demo_config("small")), force=False)
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--pretrain-iterations", "1800",
                                      "--few-label-epochs", "24"], env={"COLUMNS": "200"})
    assert result.exit_code != 0
    assert "few_label_epochs, pretrain_iterations differ" in " ".join(result.output.split())


def test_nnunet_imported_with_other_folders_is_refused(tmp_path):
    # In a child process: importing nnU-Net here would pin its folders for every later test.
    script = (
        "import os, sys\n"
        "for name in ('nnUNet_raw', 'nnUNet_preprocessed', 'nnUNet_results'):\n"
        "    os.environ[name] = sys.argv[1] + '/elsewhere/' + name\n"
        "import nnunetv2.paths\n"
        "from meddinov3.demo.config import demo_config\n"
        "from meddinov3.demo.workspace import DemoSetupError, Workspace, point_nnunet_here\n"
        "before = dict(os.environ)\n"
        "try:\n"
        "    point_nnunet_here(Workspace(__import__('pathlib').Path(sys.argv[1]) / 'demo', demo_config('small')))\n"
        "except DemoSetupError as error:\n"
        "    assert dict(os.environ) == before\n"
        "    print(error)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, encoding="utf-8",
                            errors="replace", timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "fresh process" in result.stdout and "nnUNet_raw" in result.stdout


def test_unknown_preset_and_settings_are_errors():
    with pytest.raises(ValueError, match="unknown demo preset"):
        demo_config("huge")
    with pytest.raises(ValueError, match="unknown demo settings"):
        DemoConfig.from_dict({"preset": "small", "epochz": 3})


def test_chance_dice_matches_random_labelling():
    rng = np.random.default_rng(0)
    train = np.array([0.80, 0.15, 0.05, 0.0])
    case = np.array([0.70, 0.10, 0.20, 0.0])
    reference = rng.choice(4, size=400_000, p=case)
    guess = rng.choice(4, size=reference.size, p=train)
    empirical = [2 * np.sum((guess == k) & (reference == k)) / (np.sum(guess == k) + np.sum(reference == k))
                 for k in range(3)]
    expected = expected_random_dice(train, case)
    np.testing.assert_allclose(expected[:3], empirical, rtol=0.02)
    assert np.isnan(expected[3]), "a class absent from the case has no DSC"


def test_figures_ignore_the_seaborn_style_nnunet_leaves_behind(tmp_path):
    import matplotlib.pyplot as plt
    import seaborn

    from meddinov3.demo.figures import finetuning_figure

    curve = {"train_losses": [1.0 - 0.1 * i for i in range(8)], "val_losses": [1.1 - 0.1 * i for i in range(8)],
             "mean_fg_dice": [0.1 * i for i in range(8)]}
    curves = {"pretrained": curve, "random": curve}
    plain = finetuning_figure(curves, tmp_path / "plain.png")
    with plt.style.context("default"):
        seaborn.set_theme(font_scale=2.5)  # what nnU-Net's progress plot does to the process
        styled = finetuning_figure(curves, tmp_path / "styled.png")
        assert plt.rcParams["axes.facecolor"] != "white", "the seaborn style must still be active afterwards"
    assert plain.read_bytes() == styled.read_bytes()


def test_demo_trainer_neither_mirrors_patches_nor_predictions(nnunet_env):
    from conftest import FIXTURES
    from unit_trainers import initialized_trainer, plans_with

    from meddinov3.nnunet.training import without_mirroring
    from meddinov3.nnunet.trainers import DINOv3Trainer

    plans = plans_with("dinov3", FIXTURES / "meddinov3_tiny_teacher.pth")
    mirrored = initialized_trainer(DINOv3Trainer, plans)
    assert mirrored.configure_rotation_dummyDA_mirroring_and_inital_patch_size()[3] == (0, 1), "nnU-Net's default"
    assert mirrored.inference_allowed_mirroring_axes == (0, 1)
    trainer = initialized_trainer(DINOv3Trainer, plans)
    without_mirroring(trainer)
    rotation, _, patch_size, axes = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    assert axes is None and trainer.inference_allowed_mirroring_axes is None
    transforms = trainer.get_training_transforms(patch_size, rotation, None, axes, False)
    assert "Mirror" not in repr(transforms) and "Mirror" in repr(
        mirrored.get_training_transforms(patch_size, rotation, None, (0, 1), False))


def test_probe_step_scores_both_backbones_and_resumes_from_its_feature_cache(tmp_path):
    from meddinov3.demo.pretraining import save_random_backbone
    from meddinov3.demo.probing import probe, probe_outputs
    from meddinov3.synth.dataset import SynthSpec, write_dataset
    from meddinov3.synth.tissues import LABELS

    config = demo_config("small", embed_dim=32, num_heads=1, test_cases=2, probe_size=64, probe_train_slices=16,
                         probe_steps=30)
    ws = Workspace(tmp_path, config)
    write_dataset(ws.raw_dataset, SynthSpec(cases=3, test_cases=2, seed=0, shape_zyx=(6, 64, 64)))
    # Stands in for the pretraining export: another draw of the same architecture.
    save_random_backbone(config.replace(seed=1), ws.pretrained_backbone)
    steps = [Step("probe", "probe", probe, probe_outputs)]
    [record] = run_steps(steps, ws, quiet_console(), force=False, capture=True)

    organs = [name for name in LABELS if name != "background"]
    assert [list(record.summary["dice"][init]) for init in ("pretrained", "random")] == [organs, organs]
    results = json.loads((ws.probe / "results.json").read_text(encoding="utf-8"))
    computed = {name: b["feature_cache"]["computed_slices"] for name, b in results["backbones"].items()}
    assert computed == {"pretrained": 16 + 12, "random": 16 + 12}, "16 training slices, 2 x 6 held-out slices"
    assert results["difference"]["pretrained"]["baseline"] == "random"
    means = record.summary["mean_dice"]
    assert record.summary["gain"] == pytest.approx(means["pretrained"] - means["random"])
    assert means["pretrained"] != means["random"], "two different backbones, two different heads"
    # The random twin is the file the random-init fine-tuning starts from.
    assert ws.random_backbone.is_file() and results["backbones"]["random"]["source"]["weights"] == str(ws.random_backbone)

    (ws.steps / "probe.json").unlink()  # as if the step had been interrupted after its features
    [again] = run_steps(steps, ws, quiet_console(), force=False, capture=True)
    results = json.loads((ws.probe / "results.json").read_text(encoding="utf-8"))
    assert {b["feature_cache"]["computed_slices"] for b in results["backbones"].values()} == {0}
    assert again.summary["mean_dice"] == means, "same seed, same features: same scores"


@pytest.mark.slow
def test_make_demo_command_end_to_end(tmp_path):
    """The README's `make demo` command line, in a fresh process: every organ segmented on the
    held-out cases by both fine-tuned networks, a report that shows the probe, the pretraining
    monitors, the few-label and the full-data fine-tuning comparisons in that order with every
    figure drawn in a real browser, the few-label table and a closing note with the measured
    numbers, and a second run that only reuses results."""
    from test_demo_few_labels import check_few_label_results, table_row
    from test_demo_report import decoded_data_png, dump_dom, images_in, png_size

    out = tmp_path / "demo_out"
    command = [str(Path(sys.executable).parent / "meddinov3"), "demo", "--out", str(out)]
    first = subprocess.run(command, capture_output=True, encoding="utf-8", errors="replace", timeout=3600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    summary = json.loads((out / "steps" / "report.json").read_text(encoding="utf-8"))["summary"]
    synth = json.loads((out / "steps" / "synth.json").read_text(encoding="utf-8"))["summary"]
    assert synth["integrity_check"].startswith("passed")

    for init in ("pretrained", "random"):
        assert summary["mean_dice"][init] >= MEAN_DSC_FLOOR, (init, summary)
        evaluation = json.loads((out / "evaluation" / init / "evaluation_summary.json").read_text(encoding="utf-8"))
        assert evaluation["n_cases"] == demo_config("small").test_cases
        organs = {entry["name"]: entry["dice"]["mean"] for entry in evaluation["labels"].values()}
        assert min(organs.values()) >= ORGAN_DSC_FLOOR, (init, organs)

    probe = json.loads((out / "probe" / "results.json").read_text(encoding="utf-8"))
    probed = {name: probe["backbones"][name]["mean_dice"] for name in ("pretrained", "random")}
    assert summary["probe_mean_dice"] == pytest.approx(probed)
    metrics = [json.loads(line) for line in (out / "pretrain" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    final = [m for m in metrics if "dino_global_frac" in m][-5:]
    assert summary["dino_fraction"] == pytest.approx(sum(m["dino_global_frac"] for m in final) / 5)
    # The demo's pretraining learns (issue 10's criteria): off the uniform prediction, and a teacher
    # that tells slices apart.
    assert summary["dino_fraction"] < 0.9
    assert all(m["teacher_entropy"] < m["teacher_mean_entropy"] - 0.5 for m in final)
    note = (f"final DINO loss {summary['dino_fraction']:.3f} x ln K; linear probe mean DSC "
            f"{100 * probed['pretrained']:.1f} % pretrained vs {100 * probed['random']:.1f} % random twin")
    printed = " ".join(first.stdout.split())  # the console wraps lines at its width
    assert note in printed and summary["verdict"] in printed

    # The few-label comparison (test_demo_few_labels): numbers from the evaluations on disk, printed.
    rows = summary["few_labels"]
    check_few_label_results(out, demo_config("small"), rows, printed)

    dom = dump_dom(out / "report.html", tmp_path / "profile")
    text = " ".join(dom.split())
    sections = ["What pretraining put into the features", "Is the pretraining learning?",
                "Fine-tuning on few labelled cases", "Fine-tuning comparison on all training cases"]
    positions = [text.index(heading) for heading in sections]
    assert positions == sorted(positions), "probe, then monitors, then fine-tuning with few and with all labels"
    assert summary["verdict"] in text
    table = text[positions[2]:positions[3]]
    for row in rows:
        assert table_row(row) in table, row
    images = images_in(dom)
    assert len(images) == 8
    for image in images:
        width, height = png_size(decoded_data_png(image["src"]))
        assert 300 <= width <= 2000 and height >= 200, (image["alt"], width, height)

    second = subprocess.run(command, capture_output=True, encoding="utf-8", errors="replace", timeout=600)
    assert second.returncode == 0
    assert second.stdout.count("skipped") == len(STEPS)
