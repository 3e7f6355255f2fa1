"""Runs ``python -m bunga ARGS`` with one of bunga's writers instrumented, so that a crash test's
``kill -9`` lands *inside* a write, timed by the code's own progress rather than by a sleep:

    python -m tests.crash_writers MODE TARGET MARKER -- ARGS...

TARGET is a file-name pattern (fnmatch) for writes through ``bunga.files.atomic_open`` (every atomic
file writer: feedback uploads, the embedding cache, the merge's CSVs and photo copies), or ``log``
for the prediction log's batches. The first matching write stops halfway (files: half of its first
chunk written and flushed; the log: the first INSERT of a batch larger than one statement executed),
creates MARKER and waits to be killed.

MODE ``atomic`` keeps bunga's writer as it is. MODE ``torn`` swaps in a deliberately broken one
(files: written straight into the target, no temp file, no fsync; the log: a commit after every
INSERT statement): the mutation every crash test must be able to see. For the log, each committed
batch's size is appended to ``MARKER.committed`` so a test can tell whole batches from partial ones.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

WAIT_S = 600.0  # far longer than any test waits for its kill


def _pause(marker: Path) -> None:
    marker.write_text(str(os.getpid()))
    time.sleep(WAIT_S)


class _Halfway:
    """A file handle that stops in the middle of its first write."""

    def __init__(self, handle: IO[Any], marker: Path) -> None:
        self._handle, self._marker = handle, marker

    def write(self, data: Any) -> int:
        if not self._marker.exists():
            self._handle.write(data[: max(1, len(data) // 2)])
            self._handle.flush()
            _pause(self._marker)
        return int(self._handle.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


def instrument_files(mode: str, pattern: str, marker: Path) -> None:
    import bunga.files as files

    atomic = files.atomic_open

    @contextlib.contextmanager
    def instrumented(path: Path, mode_: str = "w", **kwargs: object) -> Iterator[Any]:
        if not fnmatch.fnmatch(path.name, pattern):
            with atomic(path, mode_, **kwargs) as handle:
                yield handle
            return
        if mode == "torn":  # the mutation: no temp file, no fsync, no rename
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open(mode_, **kwargs) as handle:  # type: ignore[call-overload]
                yield _Halfway(handle, marker)
            return
        with atomic(path, mode_, **kwargs) as handle:
            yield _Halfway(handle, marker)

    files.atomic_open = instrumented  # type: ignore[assignment]


def instrument_log(mode: str, marker: Path) -> None:
    from bunga.monitor import log, store

    committed = marker.with_name(marker.name + ".committed")
    batch = {"rows": 0}
    write, execute = log.PredictionLog._write, store.Store.execute

    def counted_write(self: Any, db: Any, records: list[Any]) -> Any:
        batch["rows"] = len(records)
        result = write(self, db, records)
        if result is not None and records:
            with committed.open("a") as handle:
                handle.write(f"{len(records)}\n")
        return result

    def paused_execute(self: Any, sql: str, args: Any = ()) -> Any:
        cursor = execute(self, sql, args)
        rows = len(args) // len(log.COLUMNS.split(","))
        if sql.startswith("INSERT") and 0 < rows < batch["rows"] and not marker.exists():
            if mode == "torn":  # the mutation: a batch committed statement by statement
                self.commit()
            _pause(marker)
        return cursor

    log.PredictionLog._write = counted_write  # type: ignore[method-assign]
    store.Store.execute = paused_execute  # type: ignore[method-assign]


def main(argv: list[str]) -> None:
    mode, target, marker, separator, *args = argv
    assert mode in ("atomic", "torn") and separator == "--", argv
    if target == "log":
        instrument_log(mode, Path(marker))
    else:
        instrument_files(mode, target, Path(marker))
    from bunga.cli import app

    sys.argv = ["bunga", *args]
    app()


if __name__ == "__main__":
    main(sys.argv[1:])
