"""`python -m bunga` runs the CLI."""

from bunga.cli import main

main()
