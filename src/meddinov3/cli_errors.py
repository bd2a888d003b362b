"""How every `meddinov3` command reports a failure it expects: one red line, exit code 1."""

from __future__ import annotations

import errno
import functools
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator, TypeVar

import typer

from meddinov3.errors import InputError
from meddinov3.filenames import shown
from meddinov3.io import WriteError

if TYPE_CHECKING:
    from rich.console import Console

Command = TypeVar("Command", bound=Callable)
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def print_error(message: str, console: Console | None = None) -> None:
    """`error: <message>` on `console` (default: stderr), as one line however long the path
    (soft_wrap: never broken at the terminal's width) and whatever line breaks a library put in
    the message. The message is escaped: a path or list in brackets is shown as written, not read
    as rich markup."""
    from rich.console import Console
    from rich.markup import escape

    # shown(): a file name that is not UTF-8 (lone surrogates in Python) is printed with \xNN escapes.
    text = shown(" ".join(line.strip() for line in message.splitlines() if line.strip()))
    (console or Console(stderr=True)).print(f"[red]error:[/red] {escape(text)}", highlight=False, soft_wrap=True)


@contextmanager
def errors_as_one_line(*known: type[BaseException], console: Console | None = None) -> Iterator[None]:
    """Inside, `InputError`, `WriteError` (an output that could not be written: a full disk), an
    OSError of a full disk and the `known` failure kinds print `error: <message>` (see
    `print_error`) and exit with code 1 instead of a traceback."""
    try:
        yield
    except (InputError, WriteError, *known) as error:
        print_error(str(error), console)
        raise typer.Exit(code=1) from error
    except OSError as error:
        # A write outside `meddinov3.io` (a log appended line by line) that found the disk full.
        if error.errno not in _DISK_FULL:
            raise
        print_error(f"{error.filename or 'an output file'}: not written: {error.strerror}", console)
        raise typer.Exit(code=1) from error


def one_line_errors(command: Command) -> Command:
    """`command` with every InputError and WriteError it raises reported as one line (see `errors_as_one_line`)."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        with errors_as_one_line():
            return command(*args, **kwargs)

    return run  # type: ignore[return-value]
