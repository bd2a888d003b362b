"""The one way every command reports an expected failure."""

from __future__ import annotations

import io

import pytest
import typer
from rich.console import Console

from meddinov3.cli_errors import errors_as_one_line


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
