"""The one way a command fails (a line on stderr, exit status 2), and text safe to print."""

from __future__ import annotations

import unicodedata
from typing import NoReturn

import typer

# Control and format characters (ANSI escapes, carriage returns, bidi overrides),
# lone surrogates and line or paragraph separators: shown escaped, never sent raw.
_UNSAFE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def printable(text: str) -> str:
    """`text` with every character that could steer a terminal shown as its escape (\\x1b)."""
    if text.isprintable():
        return text
    return "".join(
        c.encode("unicode_escape").decode("ascii") if unicodedata.category(c) in _UNSAFE else c
        for c in text
    )


def fail(msg: str) -> NoReturn:
    """Print `error: msg` on stderr as one line and exit with status 2."""
    from rich.console import Console

    # soft_wrap keeps the message on one line whatever the terminal width; markup
    # is off and escapes are shown, since messages quote paths and file contents.
    Console(stderr=True).print(
        f"error: {printable(msg)}", soft_wrap=True, markup=False, highlight=False
    )
    raise typer.Exit(code=2)
