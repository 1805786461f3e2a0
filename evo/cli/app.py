"""The `innate` command line: one typer app, a module per command group.

Genome commands (`create`, `inspect`, `export`) are in genome.py, run commands
(`evolve`, `report`, `demo`) in run.py, `fewshot` in fewshot.py; each module's `register` adds its
commands. A new group is its own module and one line here.
"""

from __future__ import annotations

import typer

from evo.cli import fewshot, genome, run

app = typer.Typer(
    name="innate",
    help="Neuroevolution through a genomic bottleneck.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for group in (genome, run, fewshot):
    group.register(app)
