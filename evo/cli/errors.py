"""The one way a command fails: a line on stderr and exit status 2."""

from __future__ import annotations

from typing import NoReturn

import typer


def fail(msg: str) -> NoReturn:
    """Print `error: msg` on stderr as one line and exit with status 2."""
    from rich.console import Console

    # soft_wrap keeps the message on one line whatever the terminal width.
    Console(stderr=True).print(f"error: {msg}", soft_wrap=True, markup=False, highlight=False)
    raise typer.Exit(code=2)
