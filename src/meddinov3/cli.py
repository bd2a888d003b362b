"""The `meddinov3` command: one subcommand per job.

Each job lives in its own package and exposes a plain function; this file only wires them to
typer. Heavy imports (nnU-Net, matplotlib, SimpleITK) stay inside the job functions so that
`meddinov3 --help` is instant, and so that each job checks its paths and values before them.
"""

import os
import sys


def spin_briefly() -> None:
    """Let waiting OpenMP threads spin only briefly before they sleep, unless the user chose.

    GNU OpenMP (torch's CPU runtime) spins 300,000 times at every barrier by default: fastest on
    an idle machine, but on a busy or shared one spinning threads burn the cores the working
    threads need. Measured on 2 cores, 60 training iterations: idle 10 s with the default and
    with 10,000 spins; beside one busy process 112 s with the default, 28 s with 10,000 spins
    (prediction: 89 s -> 9 s with sleeping threads). OpenMP reads this when torch loads it, so
    it is set here, before any command can import torch.
    """
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", "10000")


# Before the imports below: a command imports torch (and with it OpenMP) at any point after them.
spin_briefly()

import typer

from meddinov3.cli_errors import one_line_errors, print_error
from meddinov3.viz.commands import features
from meddinov3.backbone.commands import weights
from meddinov3.curate.commands import curate
from meddinov3.synth.commands import synth
from meddinov3.evaluation.commands import evaluate
from meddinov3.convert.commands import convert
from meddinov3.compare.commands import compare
from meddinov3.nnunet.commands import plan, predict, train
from meddinov3.pretrain.commands import pretrain
from meddinov3.demo.commands import demo
from meddinov3.export.commands import export
from meddinov3.probe.commands import probe

app = typer.Typer(
    name="meddinov3",
    help="MedDINOv3: DINOv3 backbones for CT/MRI segmentation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    # Help texts are plain text: `hf://owner/name[@revision][/file]` must show its brackets, not
    # be read as rich markup (which raised MarkupError for `[/file]`).
    rich_markup_mode=None,
)


@app.callback()
def _group() -> None:
    """MedDINOv3: DINOv3 backbones for CT/MRI segmentation."""


COMMANDS = {
    "features": features, "curate": curate, "synth": synth, "evaluate": evaluate, "convert": convert,
    "compare": compare, "plan": plan, "train": train, "predict": predict, "export": export,
    "pretrain": pretrain, "demo": demo, "probe": probe, "weights": weights,
}
for name, command in COMMANDS.items():
    app.command(name)(one_line_errors(command))


def tolerate_narrow_terminals() -> None:
    """Progress bars and tables draw Unicode; on an ASCII-only stream (LANG unset, LC_ALL=C)
    they would raise UnicodeEncodeError mid-job, so unencodable characters become '?' instead."""
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        if encoding != "utf8" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")


# Click's UsageError (bad types, ranges, missing or unknown options), wherever this typer keeps
# click (its own copy since typer 0.2x).
USAGE_ERROR = next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "UsageError")


def main() -> None:
    tolerate_narrow_terminals()
    if len(sys.argv) < 2:
        app()  # typer's help screen
    try:
        code = app(standalone_mode=False)
    except USAGE_ERROR as error:
        # A value typer itself refused (a type, a range, a missing or unknown option): one line too.
        command = f" (see {error.ctx.command_path} --help)" if error.ctx is not None else ""
        print_error(f"{error.format_message()}{command}")
        sys.exit(error.exit_code)
    except typer.Abort:
        print_error("aborted")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
