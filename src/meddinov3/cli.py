"""The `meddinov3` command: one subcommand per job.

Each job lives in its own package and exposes a plain function; this file only wires them to
typer. Heavy imports (nnU-Net, matplotlib, SimpleITK) stay inside the job functions so that
`meddinov3 --help` is instant.
"""

import sys

import typer

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
from meddinov3.probe.commands import probe

app = typer.Typer(
    name="meddinov3",
    help="MedDINOv3: DINOv3 backbones for CT/MRI segmentation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _group() -> None:
    """MedDINOv3: DINOv3 backbones for CT/MRI segmentation."""


app.command("features")(features)
app.command("curate")(curate)
app.command("synth")(synth)
app.command("evaluate")(evaluate)
app.command("convert")(convert)
app.command("compare")(compare)
app.command("plan")(plan)
app.command("train")(train)
app.command("predict")(predict)
app.command("pretrain")(pretrain)
app.command("demo")(demo)
app.command("probe")(probe)
app.command("weights")(weights)


def tolerate_narrow_terminals() -> None:
    """Progress bars and tables draw Unicode; on an ASCII-only stream (LANG unset, LC_ALL=C)
    they would raise UnicodeEncodeError mid-job, so unencodable characters become '?' instead."""
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        if encoding != "utf8" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")


def main() -> None:
    tolerate_narrow_terminals()
    app()


if __name__ == "__main__":
    main()
