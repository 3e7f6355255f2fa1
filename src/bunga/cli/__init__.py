"""The ``bunga`` command line: thin commands that parse, call the library and print a summary. Each
module registers its commands on the one Typer app in :mod:`bunga.cli.common`."""

from bunga.cli import catalog, curators, data, models, operate
from bunga.cli.common import app

__all__ = ["app", "catalog", "curators", "data", "main", "models", "operate"]


def main() -> None:
    """Console-script entry point."""
    app()
