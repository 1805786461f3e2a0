"""The `innate` command line (`python -m evo.cli`, or the `innate` script)."""

from evo.cli.app import app

__all__ = ["app"]
