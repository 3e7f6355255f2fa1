"""Writes the generated pages at every `mkdocs build` (mkdocs-gen-files): the references of
docs/reference_pages.py and benchmarks/RESULTS.md with its figures."""

from __future__ import annotations

import sys
from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs"))

from reference_pages import api_page, cli_page, settings_page  # noqa: E402


def benchmarks_page() -> str:
    """benchmarks/RESULTS.md (written by `make bench`) with its figures, as a page of the site."""
    text = (ROOT / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8")
    for figure in sorted((ROOT / "benchmarks" / "results").glob("*.png")):
        with mkdocs_gen_files.open(f"assets/{figure.name}", "wb") as handle:
            handle.write(figure.read_bytes())
        text = text.replace(f"](results/{figure.name})", f"](assets/{figure.name})")
    return text.replace("# Benchmark results", "# All measurements", 1)


for target, make in (
    ("reference/cli.md", cli_page),
    ("reference/settings.md", settings_page),
    ("reference/api.md", api_page),
    ("benchmarks.md", benchmarks_page),
):
    with mkdocs_gen_files.open(target, "w") as handle:
        handle.write(make())
