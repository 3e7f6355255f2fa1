"""The folder inbox (``BUNGA_DATA_DIR/feedback``): files written atomically where `bunga merge` reads
them, within a quota held across the machine's workers (:mod:`bunga.garden.quota`)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from bunga.files import atomic_write_text, sha256_bytes
from bunga.garden import records
from bunga.garden.catalog_edits import CATALOG
from bunga.garden.decisions import DECISIONS
from bunga.garden.quota import CLAIMED, STORED, InboxQuota, Reservation
from bunga.garden.records import RECORD_BYTES, InboxFull, InboxUnavailable, same_upload

CLAIM_WAITS, CLAIM_WAIT_S = 200, 0.05  # how long a retry waits for another try of its upload to finish


class DirectoryInbox:
    """The inbox folder, its quota held across the machine's workers by bunga.garden.quota."""

    def __init__(self, folder: Path, max_bytes: int, max_files: int) -> None:
        self.folder, self.max_bytes, self.max_files = folder, max_bytes, max_files
        self.quota = InboxQuota(folder, max_bytes, max_files)

    def _within_quota(self, nbytes: int, nfiles: int, write: Any, *args: Any, **kw: Any) -> str:
        held = self.quota.reserve(nbytes, nfiles)  # checked and held in one step, before any write
        return self._write_held(held, write, *args, **kw)

    def _write_held(self, held: Reservation | str, write: Any, *args: Any, **kw: Any) -> str:
        if not isinstance(held, Reservation):
            raise InboxFull(held)
        try:
            stored: str = write(self.folder, *args, **kw)
        except BaseException:  # nothing stored (the writers leave no partial file): give the room back
            self.quota.release(held)
            raise
        self.quota.commit(held)
        return stored

    def store_photo(
        self, data: bytes, suffix: str, label: str | None, record_id: str | None = None, **meta: Any
    ) -> str:
        sha = sha256_bytes(data)
        nbytes, write = len(data) + RECORD_BYTES, records.store_photo
        if record_id is None:
            return self._within_quota(nbytes, 2, write, data, suffix, label, sha=sha, **meta)
        claim = f"{sha}-{record_id}"
        stored = self.folder / records.PHOTOS / f"{claim}.json"
        for _ in range(CLAIM_WAITS):
            held = self.quota.reserve(nbytes, 2, claim, stored)
            if held == STORED:
                same_upload(stored.read_bytes(), label)
                return sha  # this upload was stored before: a retry
            if held != CLAIMED:  # a reservation, or why the inbox is full
                return self._write_held(held, write, data, suffix, label, record_id=record_id, sha=sha, **meta)
            time.sleep(CLAIM_WAIT_S)  # another try of this upload is being stored: its outcome is ours
        raise InboxUnavailable("another try of this upload (the same Idempotency-Key) is still being stored")

    def store_measurement(self, values: list[float], label: str, **meta: Any) -> str:
        return self._within_quota(RECORD_BYTES, 1, records.store_measurement, values, label, **meta)

    def voter_salt(self) -> bytes:
        return records.voter_salt(self.folder)

    def usage(self) -> tuple[int, int]:
        return self.quota.usage()

    def store_decision(self, name: str, text: str) -> None:
        atomic_write_text(records.inside(self.folder, name), text)

    def store_catalog_edit(self, name: str, text: str) -> None:
        atomic_write_text(records.inside(self.folder, name), text)

    def catalog_files(self, skip: frozenset[str] = frozenset()) -> list[tuple[str, bytes]]:
        out = []
        for path in sorted(self.folder.glob(f"{CATALOG}/*.json")):
            name = path.relative_to(self.folder).as_posix()
            if name not in skip:
                with contextlib.suppress(OSError):
                    out.append((name, path.read_bytes()))
        return out

    def review_files(self) -> list[tuple[str, bytes]]:
        out = []
        for pattern in (f"{records.PHOTOS}/*.json", f"{DECISIONS}/*.json"):
            for path in sorted(self.folder.glob(pattern)):
                with contextlib.suppress(OSError):
                    out.append((path.relative_to(self.folder).as_posix(), path.read_bytes()))
        return out

    def photo(self, sha256: str) -> tuple[bytes, str] | None:
        for path in self.folder.glob(f"{records.PHOTOS}/{sha256}.*"):
            if path.suffix != ".json":
                return path.read_bytes(), path.suffix.lstrip(".")
        return None
