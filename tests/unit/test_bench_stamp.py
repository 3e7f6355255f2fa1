"""Benchmark stamps: a run that rewrites its own results is not measuring "dirty" code."""

from __future__ import annotations

import subprocess
from pathlib import Path

from benchmarks.harness.common import commit


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def test_results_written_by_the_run_do_not_make_the_stamp_dirty(tmp_path: Path) -> None:
    for name in ("src/bunga/x.py", "benchmarks/results/latency.json", "benchmarks/RESULTS.md", "benchmarks/b.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "x")
    assert not commit(tmp_path).endswith("-dirty")
    (tmp_path / "benchmarks/results/latency.json").write_text("2\n")
    (tmp_path / "benchmarks/RESULTS.md").write_text("2\n")
    assert not commit(tmp_path).endswith("-dirty")  # the run's own output
    (tmp_path / "benchmarks/b.py").write_text("2\n")
    assert commit(tmp_path).endswith("-dirty")  # measuring code that differs from the commit
    _git(tmp_path, "checkout", "benchmarks/b.py")
    (tmp_path / "src/bunga/x.py").write_text("2\n")
    assert commit(tmp_path).endswith("-dirty")
