"""Docs stay in sync with the code: every CLI command has help text and appears in the README."""

from __future__ import annotations

import typer.main
from typer.testing import CliRunner

from bunga.cli import app
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def _commands() -> dict[str, object]:
    group = typer.main.get_command(app)
    found: dict[str, object] = {}
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        subcommands = getattr(command, "commands", None)
        if subcommands:
            found.update({f"{name} {sub}": c for sub, c in subcommands.items()})
        else:
            found[name] = command
    return found


def test_every_command_has_help_and_is_documented() -> None:
    commands = _commands()
    assert {
        "merge",
        "train",
        "tune",
        "evaluate",
        "promote",
        "rollback",
        "history",
        "pipeline",
        "export",
        "serve",
        "review export",
        "review import",
        "synth",
    } <= set(commands)
    for name, command in commands.items():
        assert (command.help or "").strip(), f"`bunga {name}` has no help text"  # type: ignore[attr-defined]
        assert f"bunga {name}" in README, f"`bunga {name}` is not in the README"
        result = CliRunner().invoke(app, [*name.split(), "--help"])
        assert result.exit_code == 0 and "Usage" in result.output


def test_quickstart_is_two_commands() -> None:
    assert "make run" in README and "make test" in README
    makefile = (ROOT / "Makefile").read_text()
    assert "\nrun:" in makefile and "\ntest:" in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_legacy_entry_points_exist_and_hold_no_logic() -> None:
    for name in ("merge_data.py", "train_with_mlflow.py", "api.py"):
        source = (ROOT / name).read_text()
        assert len([line for line in source.splitlines() if line.strip()]) <= 10, name
        assert name.removesuffix(".py").replace("_", " ") in README or name in README


def test_legacy_merge_command_runs(sample_data: object, tmp_path: object) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, str(ROOT / "merge_data.py")], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "151 read = 147 kept" in result.stdout.replace("\n", " ")
