"""How every `meddinov3` command reports a failure it expects: one red line, exit code 1."""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

import typer

if TYPE_CHECKING:
    from rich.console import Console


@contextmanager
def errors_as_one_line(*known: type[BaseException], console: Console | None = None) -> Iterator[None]:
    """Inside, the `known` failure kinds print `error: <message>` to `console` (default: stderr) and
    exit with code 1 instead of a traceback. The message is escaped: a path or list in brackets is
    shown as written, not read as rich markup."""
    try:
        yield
    except known as error:
        from rich.console import Console
        from rich.markup import escape

        # soft_wrap: one line whatever the width (rich would otherwise break it at 80 columns when
        # stderr is not a terminal, e.g. in logs); the terminal wraps it for reading.
        (console or Console(stderr=True)).print(f"[red]error:[/red] {escape(str(error))}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1) from error
