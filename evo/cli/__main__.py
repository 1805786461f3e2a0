"""`python -m evo.cli`: the `innate` command line."""

from evo.cli.app import app

app(prog_name="innate")
