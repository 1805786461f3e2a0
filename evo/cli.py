"""The `innate` command line: genome commands and run commands on one typer app."""

from __future__ import annotations

import typer

from evo import cmd_fewshot, cmd_genome, cmd_run

app = typer.Typer(
    name="innate",
    help="Neuroevolution through a genomic bottleneck.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
cmd_genome.register(app)
cmd_run.register(app)
cmd_fewshot.register(app)

if __name__ == "__main__":
    app()
