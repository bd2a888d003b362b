"""`meddinov3 X --help` answers for every registered command, at any terminal width.

The commands are read from the typer app itself (not a hand-kept list), so a new command is
checked the day it is added. Help texts are plain text: brackets such as
`hf://owner/name[@revision][/file]` show literally instead of being parsed as rich markup.
"""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from meddinov3.cli import app


def command_paths(command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and subcommand below `command` (a click command of typer's own click copy,
    so groups are recognised by their `commands`), as argument paths."""
    paths = [path]
    for name, sub in getattr(command, "commands", {}).items():
        paths += command_paths(sub, (*path, name))
    return paths


ROOT = typer.main.get_command(app)
PATHS = command_paths(ROOT)


def test_the_walk_finds_every_registered_command():
    registered = {info.name for info in app.registered_commands}
    assert {path[0] for path in PATHS if path} == registered
    assert len(registered) >= 13


@pytest.mark.parametrize("columns", [40, 200])
@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "meddinov3")
def test_help_renders(path, columns):
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": str(columns), "TERMINAL_WIDTH": str(columns)})
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["train", "weights"])
def test_brackets_in_help_show_literally(command):
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "hf://owner/name[@revision][/file]" in " ".join(result.output.split())
