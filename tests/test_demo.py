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

from meddinov3.demo.config import DemoConfig, demo_config
from meddinov3.demo.pipeline import check_settings
from meddinov3.demo.reporting import expected_random_dice
from meddinov3.demo.steps import DemoStepError, Step, run_steps
from meddinov3.demo.workspace import DemoSetupError, Workspace


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
    other = Workspace(tmp_path, demo_config("small", seed=5))
    with pytest.raises(DemoSetupError, match="seed"):
        check_settings(other, force=False)
    check_settings(other, force=True)
    assert json.loads((tmp_path / "demo.json").read_text(encoding="utf-8"))["seed"] == 5


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

    from meddinov3.demo.figures import pretraining_figure

    metrics = [{"iteration": i, "loss": 10.0 - i, "dino_global": 5.0, "ibot": 3.0 - 0.1 * i} for i in range(20)]
    plain = pretraining_figure(metrics, tmp_path / "plain.png")
    with plt.style.context("default"):
        seaborn.set_theme(font_scale=2.5)  # what nnU-Net's progress plot does to the process
        styled = pretraining_figure(metrics, tmp_path / "styled.png")
        assert plt.rcParams["axes.facecolor"] != "white", "the seaborn style must still be active afterwards"
    assert plain.read_bytes() == styled.read_bytes()


@pytest.mark.slow
def test_make_demo_command_end_to_end(tmp_path):
    """The README's `make demo` command line, in a fresh process: report with organ DSC well above
    chance, every figure drawn in a real browser, and a second run that only reuses the results."""
    from test_demo_report import decoded_data_png, dump_dom, images_in, png_size

    out = tmp_path / "demo_out"
    command = [str(Path(sys.executable).parent / "meddinov3"), "demo", "--out", str(out)]
    first = subprocess.run(command, capture_output=True, encoding="utf-8", errors="replace", timeout=3600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    summary = json.loads((out / "steps" / "report.json").read_text(encoding="utf-8"))["summary"]
    synth = json.loads((out / "steps" / "synth.json").read_text(encoding="utf-8"))["summary"]
    assert synth["integrity_check"].startswith("passed")

    chance = summary["chance_dice"]
    for init in ("pretrained", "random"):
        assert summary["mean_dice"][init] > 10 * chance, (init, summary)
        evaluation = json.loads((out / "evaluation" / init / "evaluation_summary.json").read_text(encoding="utf-8"))
        assert evaluation["n_cases"] == demo_config("small").test_cases
        # A minutes-long run learns the big organs first (see the report's note).
        big = {entry["name"]: entry["dice"]["mean"] for entry in evaluation["labels"].values()}
        assert big["liver"] > 0.5 and big["vertebrae"] > 0.5, (init, big)

    images = images_in(dump_dom(out / "report.html", tmp_path / "profile"))
    assert len(images) == 6
    for image in images:
        width, height = png_size(decoded_data_png(image["src"]))
        assert 300 <= width <= 2000 and height >= 200, (image["alt"], width, height)

    second = subprocess.run(command, capture_output=True, encoding="utf-8", errors="replace", timeout=600)
    assert second.returncode == 0
    assert second.stdout.count("skipped") == 10
