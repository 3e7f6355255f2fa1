"""Small file helpers shared by the merge, the cache and the feedback inbox: atomic writes, hashes."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

_CHUNK = 1 << 20
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
STALE_TEMP_S = 3600.0  # an atomic write older than this was interrupted


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of a byte string."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def atomic_open(path: Path, mode: str = "w", **kwargs: object) -> Iterator[IO[str]]:
    """Open a temp file beside ``path``; on success it is fsynced and renamed over ``path``.

    A crash at any point leaves either the old file or the new one, never a partial one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as handle:  # type: ignore[call-overload]
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write bytes to ``path`` atomically (temp file, fsync, rename)."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)  # type: ignore[arg-type]


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 text to ``path`` atomically."""
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)


def atomic_copy(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` byte for byte, atomically; ``src`` is only read."""
    with src.open("rb") as reader, atomic_open(dst, "wb") as writer:
        while chunk := reader.read(_CHUNK):
            writer.write(chunk)  # type: ignore[arg-type]


def safe_cell(value: str) -> str:
    """Neutralise spreadsheet formulas in a text cell (CSV injection) by prefixing a quote."""
    return "'" + value if value.startswith(_FORMULA_PREFIXES) else value


def remove_stale_temps(folder: Path, older_than_s: float = 0.0) -> int:
    """Delete temp files left by interrupted atomic writes (older than ``older_than_s``); returns how many.

    A writer that is still running keeps its temp file younger than the bound, so a folder shared by
    several processes (the feedback inbox) is swept with a bound well above any single write.
    """
    removed = 0
    if folder.is_dir():
        cutoff = time.time() - older_than_s
        for tmp in folder.rglob(".*.tmp"):
            try:
                if tmp.stat().st_mtime <= cutoff:
                    tmp.unlink()
                    removed += 1
            except FileNotFoundError:  # its writer finished or another sweeper got there first
                continue
    return removed
