"""Helpers shared by the benchmarks: machine description, result files, timing statistics."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]  # benchmarks/harness/common.py -> the repository
RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "benchmarks" / ".work"
SHARED_FLOWERS = ROOT.parent / "shared" / "data" / "tf_flowers"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


# The code a result describes: a result measured on other code is stale and shown as such.
CODE = ("src", "benchmarks", "pyproject.toml", "requirements")


def code_digest() -> str:
    """sha256 over the files that decide what the benchmarks measure (results excluded)."""
    digest = hashlib.sha256()
    for top in CODE:
        base = ROOT / top
        files = [base] if base.is_file() else sorted(base.rglob("*"))
        for path in files:
            rel = path.relative_to(ROOT).as_posix()
            # run.py orchestrates, report.py and summary.py render: they decide how results are shown, not
            # what is measured
            shown = (
                "benchmarks/__main__.py",
                "benchmarks/harness/run.py",
                "benchmarks/harness/report.py",
                "benchmarks/harness/summary.py",
            )
            skip = ("/results/", "/.work/", "__pycache__", ".egg-info", "RESULTS.md", *shown)
            if path.is_file() and not any(part in f"/{rel}" for part in skip):
                digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


# What a run writes itself: its results never make the code it measured "dirty".
RESULTS_PATHSPEC = (":(exclude)benchmarks/results", ":(exclude)benchmarks/RESULTS.md", ":(exclude)benchmarks/.work")


def commit(root: Path = ROOT) -> str:
    """The checked-out commit, with ``-dirty`` when the measured code differs from it."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False).stdout.strip()

    head = git("rev-parse", "--short=12", "HEAD") or "unknown"
    changed = git("status", "--porcelain", "--untracked-files=no", "--", *CODE, *RESULTS_PATHSPEC)
    return head + ("-dirty" if changed else "")


def stamp() -> dict[str, str]:
    """Commit, code digest and date of a measurement."""
    return {
        "commit": commit(),
        "code_digest": code_digest(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def save(name: str, payload: dict[str, Any]) -> Path:
    """Write ``results/<name>.json`` with the machine and the code stamp attached."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), "stamp": stamp(), **payload}, indent=2, default=str) + "\n")
    return path


def block(fn: Callable[[], Any], repeat: int, warmup: int = 3) -> float:
    """Median seconds of ``repeat`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    return float(timed(fn, repeat=repeat)["median_s"])


def timed(fn: Callable[[], Any], repeat: int = 5, number: int = 1) -> dict[str, float]:
    """Median, min and max seconds per call over ``repeat`` rounds of ``number`` calls."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - start) / number)
    return {"median_s": statistics.median(samples), "min_s": min(samples), "max_s": max(samples), "repeat": repeat}
