"""Peak memory of a command, measured cleanly: a small launcher process forks and execs it and reads
its ``ru_maxrss`` with ``os.wait4``. Forked straight from the benchmark runner, a child's peak would
count the runner's pages it shares until exec (every such figure once read the runner's 2 GB); forked
from this launcher (a bare interpreter of about 10 MB) it counts the command's own.

Used as ``Measured(argv, ...)`` in place of ``subprocess.Popen(argv, ...)``; run as a script it is
the launcher: ``python peak.py REPORT.json -- COMMAND...``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any


class Measured:
    """A command started through the launcher; ``wait()`` gives its exit code and peak RSS in MB."""

    def __init__(self, argv: list[str], **popen: Any) -> None:
        from benchmarks.harness.common import WORK

        WORK.mkdir(parents=True, exist_ok=True)
        self.report = WORK / f"peak-{uuid.uuid4().hex}.json"
        launcher = [sys.executable, "-I", str(Path(__file__).resolve()), str(self.report), "--"]
        self.proc = subprocess.Popen([*launcher, *argv], **popen)

    def wait(self) -> tuple[int, float]:
        code = self.proc.wait()
        try:
            peak_kb = json.loads(self.report.read_text())["maxrss_kb"]
        finally:
            self.report.unlink(missing_ok=True)
        return code, peak_kb / 1024


def _launch(report: str, argv: list[str]) -> int:
    pid = os.fork()
    if pid == 0:  # the child: become the command
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    Path(report).write_text(json.dumps({"maxrss_kb": usage.ru_maxrss}))
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.exit("usage: peak.py REPORT.json -- COMMAND...")
    sys.exit(_launch(sys.argv[1], sys.argv[3:]))
