"""The feedback inbox's quota, held across every worker of one machine.

An upload reserves its bytes and files *before* it writes anything and in one step with the check
(under an exclusive lock on the inbox's ledger file, so the workers of one machine see one another's
reservations at once); the reservation becomes usage when the write succeeds and is released when it
fails. The ledger is re-counted from disk every ``refresh_s`` (files removed by an operator free
their space), and reservations of a process that died are dropped. ``max_files`` counts files: a
photo upload stores two (the photo and its record; one when the photo is already there), a
measurement one. The database inbox (bunga.garden.inbox) does the check and the insert in one
transaction instead, with the same ``refusal`` rule.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bunga.files import atomic_write_text
from bunga.garden import records

LEDGER, LOCK = ".quota.json", ".quota.lock"
STALE_RESERVATION_S = 600.0  # far beyond the request timeout: a reservation this old was never finished


CLAIMED = "claimed"  # reserve(): another upload in progress holds the same claim
STORED = "stored"  # reserve(): the claim's upload is stored already (a retry that came late)


@dataclass(frozen=True)
class Reservation:
    """Bytes and files held for one upload until it is committed or released."""

    token: str
    nbytes: int
    nfiles: int


def refusal(used: int, files: int, nbytes: int, nfiles: int, max_bytes: int, max_files: int) -> str | None:
    """Why storing ``nbytes`` in ``nfiles`` more files on top of ``used`` bytes in ``files`` files would
    go over the quota (one sentence), or None. The directory ledger and the database inbox both ask."""
    if used + nbytes > max_bytes:
        return f"the feedback inbox is full ({used:,} of {max_bytes:,} bytes used)"
    if files + nfiles > max_files:
        return f"the feedback inbox is full ({files:,} of {max_files:,} files)"
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class InboxQuota:
    """The quota of a directory inbox, kept in a ledger file beside it (``.quota.json``)."""

    def __init__(self, folder: Path, max_bytes: int, max_files: int, refresh_s: float = 5.0) -> None:
        self.folder, self.max_bytes, self.max_files, self.refresh_s = folder, max_bytes, max_files, refresh_s
        self._threads = threading.Lock()  # flock is per open file; this keeps one worker's threads in line too

    @contextmanager
    def _ledger(self) -> Iterator[dict[str, Any]]:
        """The ledger, read and (when the block ends) written back under the inbox's exclusive lock."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._threads, (self.folder / LOCK).open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                path = self.folder / LEDGER
                try:
                    ledger = json.loads(path.read_text("utf-8"))
                except (OSError, ValueError):
                    ledger = {}
                before = json.dumps(ledger, sort_keys=True)
                self._refresh(ledger)
                yield ledger
                if json.dumps(ledger, sort_keys=True) != before:
                    atomic_write_text(path, json.dumps(ledger, sort_keys=True))
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _refresh(self, ledger: dict[str, Any]) -> None:
        """Re-count the disk when the count is old; drop reservations of dead or stuck processes."""
        now = time.time()
        pending = ledger.setdefault("pending", {})
        for token, held in list(pending.items()):
            if not _alive(int(held[2])) or now - float(held[3]) > STALE_RESERVATION_S:
                del pending[token]
        if now - float(ledger.get("counted_at", 0.0)) >= self.refresh_s or "bytes" not in ledger:
            ledger["bytes"], ledger["files"] = records.usage(self.folder)
            ledger["counted_at"] = now

    @staticmethod
    def _total(ledger: dict[str, Any]) -> tuple[int, int]:
        pending = ledger.get("pending", {}).values()
        return int(ledger["bytes"]) + sum(int(p[0]) for p in pending), int(ledger["files"]) + sum(
            int(p[1]) for p in pending
        )

    def reserve(
        self, nbytes: int, nfiles: int, claim: str | None = None, stored: Path | None = None
    ) -> Reservation | str:
        """Hold ``nbytes`` in ``nfiles`` files for one upload, or say why the inbox is full. With a
        ``claim`` (the record an idempotency key names), ``CLAIMED`` while another upload holds it and
        ``STORED`` once its record ``stored`` exists: both are looked at under the lock the commit
        takes, so two tries of one upload arriving together are never both charged."""
        with self._ledger() as ledger:
            if claim is not None and any(len(p) > 4 and p[4] == claim for p in ledger["pending"].values()):
                return CLAIMED
            if stored is not None and stored.is_file():  # written before its commit, which holds this lock
                return STORED
            full = refusal(*self._total(ledger), nbytes, nfiles, self.max_bytes, self.max_files)
            if full is not None:
                return full
            reservation = Reservation(uuid.uuid4().hex, nbytes, nfiles)
            ledger["pending"][reservation.token] = [nbytes, nfiles, os.getpid(), time.time(), claim]
            return reservation

    def commit(self, reservation: Reservation) -> None:
        """Count the stored upload (as reserved: the next re-count from disk makes it exact)."""
        with self._ledger() as ledger:
            if ledger["pending"].pop(reservation.token, None) is not None:
                ledger["bytes"] = int(ledger["bytes"]) + reservation.nbytes
                ledger["files"] = int(ledger["files"]) + reservation.nfiles

    def release(self, reservation: Reservation) -> None:
        """Give back the room of an upload that was not stored."""
        with self._ledger() as ledger:
            ledger["pending"].pop(reservation.token, None)

    def usage(self) -> tuple[int, int]:
        """(bytes, files) stored in the inbox plus what uploads in progress reserved."""
        with self._ledger() as ledger:
            return self._total(ledger)
