"""The one way every command reports an expected failure."""

from __future__ import annotations

import inspect
import io

import pytest
import typer
from rich.console import Console

from meddinov3.cli_errors import errors_as_one_line, one_line_errors
from meddinov3.errors import InputError


def test_expected_failure_is_one_literal_line_and_exit_code_1():
    console = Console(file=io.StringIO(), width=200)
    with pytest.raises(typer.Exit) as stopped:
        with errors_as_one_line(ValueError, console=console):
            raise ValueError("no image at /data/[bold]/case_001.nii.gz")
    assert stopped.value.exit_code == 1
    # Brackets in a path are text, not rich markup.
    assert console.file.getvalue() == "error: no image at /data/[bold]/case_001.nii.gz\n"


def test_unexpected_failures_keep_their_traceback():
    console = Console(file=io.StringIO())
    with pytest.raises(KeyError):
        with errors_as_one_line(ValueError, console=console):
            raise KeyError("bug")
    assert console.file.getvalue() == ""


def test_a_long_or_multi_line_message_stays_one_line():
    """Libraries break their messages over lines and rich wraps at the terminal width: neither
    may split the one `error:` line (a path cut in two cannot be copied)."""
    console = Console(file=io.StringIO(), width=30)
    path = "/data/a/rather/long/folder/case_001.nii.gz"
    with pytest.raises(typer.Exit):
        with errors_as_one_line(console=console):
            raise InputError(f"{path}: truncated\n\n  (cut off while copying?)")
    assert console.file.getvalue() == f"error: {path}: truncated (cut off while copying?)\n"


def test_every_command_reports_input_errors_in_one_line():
    @one_line_errors
    def command(path: str = "x") -> None:
        """Help text."""
        raise InputError(f"{path}: no such file")

    assert command.__doc__ == "Help text." and "path" in inspect.signature(command).parameters
    with pytest.raises(typer.Exit) as stopped:
        command("scan.nii.gz")
    assert stopped.value.exit_code == 1
