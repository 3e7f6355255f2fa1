"""The reference pages, built from the code (docs/gen_reference.py writes them at every site build,
so they cannot drift): the CLI from the Typer app, the HTTP API from the app's OpenAPI schema, every
setting from ``Settings`` (name, environment variable, default, description)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import typer.main

from bunga.cli import app as cli_app
from bunga.config import Settings


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def cli_page() -> str:
    lines = [
        "# Command line reference",
        "",
        "Generated from the `bunga` commands' own help. Every command answers bad input with one line",
        "saying what to fix and a non-zero exit code (1 data, 2 usage, 3 a refused gate, 4 a monitoring alarm).",
        "",
    ]
    group = typer.main.get_command(cli_app)

    def walk(command: Any, path: list[str]) -> None:
        subcommands = getattr(command, "commands", None)  # a group (Typer may bring its own click)
        if subcommands:
            for name, sub in sorted(subcommands.items()):
                walk(sub, [*path, name])
            return
        name = " ".join(path)
        lines.extend([f"## bunga {name}", "", (command.help or "").strip(), ""])
        params = [p for p in command.params if p.name != "help"]
        if params:
            lines.extend(["| option | default | what it does |", "|---|---|---|"])
            for p in params:
                flags = ", ".join(f"`{o}`" for o in getattr(p, "opts", [])) or f"`{p.name}`"
                default = "" if p.default in (None, False) or callable(p.default) else f"`{p.default}`"
                lines.append(f"| {flags} | {_cell(default)} | {_cell(getattr(p, 'help', '') or '')} |")
            lines.append("")

    walk(group, [])
    return "\n".join(lines) + "\n"


def settings_page() -> str:
    lines = [
        "# Settings reference",
        "",
        "Generated from `bunga.config.Settings`. Settings come from environment variables (prefix `BUNGA_`) or",
        "a `.env` file; relative paths resolve against the working directory.",
        "",
        "| variable | default | what it does |",
        "|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names = [a for a in getattr(alias, "choices", []) if isinstance(a, str) and a.isupper()] or [
            f"BUNGA_{name.upper()}"
        ]
        default = field.default
        shown = json.dumps(default) if isinstance(default, list | dict) else ("–" if default is None else default)
        variable = ", ".join(f"`{n}`" for n in names)
        lines.append(f"| {variable} | `{_cell(shown)}` | {_cell(field.description or '')} |")
    return "\n".join(lines) + "\n"


def api_page() -> str:
    from bunga.serving.app import create_app

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp) / "d", model_dir=Path(tmp) / "m", monitor_log=False)
        schema: dict[str, Any] = create_app(settings).openapi()
    lines = [
        "# HTTP API reference",
        "",
        f"Generated from the app's OpenAPI schema ({schema['info']['title']} {schema['info']['version']}). A running",
        "service also serves it at `/openapi.json` and as Swagger UI at `/docs` (no CDN).",
        "",
    ]
    for path, operations in sorted(schema["paths"].items()):
        for method, op in operations.items():
            lines += [f"## {method.upper()} `{path}`", "", f"**{op.get('summary', '')}**", ""]
            if op.get("description"):
                lines += [op["description"].strip(), ""]
            params = op.get("parameters", [])
            if params:
                lines += ["| parameter | in | what it is |", "|---|---|---|"]
                for p in params:
                    lines.append(f"| `{p['name']}` | {p['in']} | {_cell(p.get('description', ''))} |")
                lines.append("")
            codes = ", ".join(
                f"`{code}` {_cell(r.get('description', ''))}" for code, r in op.get("responses", {}).items()
            )
            lines += [f"Answers: {codes}", ""]
    return "\n".join(lines) + "\n"
