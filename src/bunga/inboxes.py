"""Where visitors' feedback is kept: a directory (the default, also what `bunga merge` reads) or a
PostgreSQL database (``BUNGA_INBOX_DB``; replicas that share no disk, e.g. Heroku dynos and Fargate
tasks). Both take the same calls, enforce the same quota and write the same records; the database
is exported to the directory layout, byte for byte, before a merge (see ``export``)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from bunga import inbox
from bunga.catalog_edits import CATALOG
from bunga.decisions import DECISIONS
from bunga.errors import BungaError
from bunga.files import atomic_write_bytes, atomic_write_text, sha256_bytes
from bunga.postgres import Pool, PoolExhausted
from bunga.quota import CLAIMED, InboxQuota, Reservation, refusal

log = logging.getLogger("bunga.inbox")
CLAIM_WAITS, CLAIM_WAIT_S = 200, 0.05  # how long a retry waits for another try of its upload to finish
RECORD_BYTES = 2_000  # what a metadata record counts against the byte quota
INBOX_LOCK = 0x62756E6769  # "bungi": the advisory lock that serialises the quota check and the insert


class InboxFull(BungaError):
    """Storing this would go over the inbox's quota; the message says which."""


class InboxConflict(BungaError):
    """A retry of an upload (its Idempotency-Key) that says something else than the upload stored."""


def same_upload(stored: bytes, label: str | None) -> None:
    """InboxConflict when the record stored under an upload's key gives another label than its retry."""
    try:
        kept = json.loads(stored).get("label")
    except (ValueError, AttributeError):
        return
    if kept != label:
        raise InboxConflict(
            f"this Idempotency-Key was used for an upload labelled {kept!r}, not {label!r}: use a new key"
        )


class InboxUnavailable(BungaError):
    """The inbox cannot take this now (its database does not answer, or another try of the upload holds it)."""


class Inbox(Protocol):
    """What the feedback endpoint needs of an inbox."""

    max_bytes: int
    max_files: int

    def store_photo(
        self, data: bytes, suffix: str, label: str | None, record_id: str | None = None, **meta: Any
    ) -> str:
        """Keep a photo and one metadata record; returns the photo's sha256 (InboxFull over quota). With
        ``record_id`` (from the sender's idempotency key) a record already stored under it is kept as it
        is and costs nothing: a retried upload is recorded once."""
        ...

    def store_measurement(self, values: list[float], label: str, **meta: Any) -> str:
        """Keep one labelled measurement record; returns its record id (InboxFull over quota)."""
        ...

    def voter_salt(self) -> bytes:
        """The inbox's secret for voter pseudonyms (one per inbox, shared by every replica)."""
        ...

    def usage(self) -> tuple[int, int]:
        """(bytes, files) held."""
        ...

    def store_decision(self, name: str, text: str) -> None:
        """Keep a curator's decision record (outside the quota: curators are not anonymous)."""
        ...

    def review_files(self) -> list[tuple[str, bytes]]:
        """(name, bytes) of every photo metadata record and decision record, for the review queue."""
        ...

    def store_catalog_edit(self, name: str, text: str) -> None:
        """Keep a curator's catalogue edit (outside the quota, as decisions)."""
        ...

    def catalog_files(self, skip: frozenset[str] = frozenset()) -> list[tuple[str, bytes]]:
        """(name, bytes) of every catalogue edit record not named in ``skip``, in name order."""
        ...

    def photo(self, sha256: str) -> tuple[bytes, str] | None:
        """A stored photo's bytes and suffix, or None."""
        ...


class DirectoryInbox:
    """The inbox folder, its quota held across the machine's workers by bunga.quota."""

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
        nbytes, write = len(data) + RECORD_BYTES, inbox.store_photo
        if record_id is None:
            return self._within_quota(nbytes, 2, write, data, suffix, label, sha=sha, **meta)
        claim = f"{sha}-{record_id}"
        stored = self.folder / inbox.PHOTOS / f"{claim}.json"
        for _ in range(CLAIM_WAITS):
            if stored.is_file():
                same_upload(stored.read_bytes(), label)
                return sha  # this upload was stored before: a retry
            held = self.quota.reserve(nbytes, 2, claim)
            if held != CLAIMED:  # a reservation, or why the inbox is full
                return self._write_held(held, write, data, suffix, label, record_id=record_id, sha=sha, **meta)
            time.sleep(CLAIM_WAIT_S)  # another try of this upload is being stored: its outcome is ours
        raise InboxUnavailable("another try of this upload (the same Idempotency-Key) is still being stored")

    def store_measurement(self, values: list[float], label: str, **meta: Any) -> str:
        return self._within_quota(RECORD_BYTES, 1, inbox.store_measurement, values, label, **meta)

    def voter_salt(self) -> bytes:
        return inbox.voter_salt(self.folder)

    def usage(self) -> tuple[int, int]:
        return self.quota.usage()

    def store_decision(self, name: str, text: str) -> None:
        atomic_write_text(inbox.inside(self.folder, name), text)

    def store_catalog_edit(self, name: str, text: str) -> None:
        atomic_write_text(inbox.inside(self.folder, name), text)

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
        for pattern in (f"{inbox.PHOTOS}/*.json", f"{DECISIONS}/*.json"):
            for path in sorted(self.folder.glob(pattern)):
                with contextlib.suppress(OSError):
                    out.append((path.relative_to(self.folder).as_posix(), path.read_bytes()))
        return out

    def photo(self, sha256: str) -> tuple[bytes, str] | None:
        for path in self.folder.glob(f"{inbox.PHOTOS}/{sha256}.*"):
            if path.suffix != ".json":
                return path.read_bytes(), path.suffix.lstrip(".")
        return None


SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox_files (
    name TEXT PRIMARY KEY, kind TEXT NOT NULL, sha256 TEXT, data BYTEA NOT NULL, bytes BIGINT NOT NULL,
    stored_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS inbox_meta (key TEXT PRIMARY KEY, value BYTEA NOT NULL)
"""


class PostgresInbox:
    """The inbox in one PostgreSQL database: each file of the directory layout is one row (its
    relative name and exact bytes), so a quota check and the insert that follows it are one
    transaction under an advisory lock, on every replica at once."""

    def __init__(self, url: str, max_bytes: int, max_files: int, pool_size: int = 4, wait_s: float = 3.0) -> None:
        self.url, self.max_bytes, self.max_files = url, max_bytes, max_files
        self.pool = Pool(url, pool_size, wait_s)  # bounded per worker; every session carries bunga's timeouts
        self._schema_ready = False  # made on first use: a database that is down must not stop serving

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:
        """A cursor in one transaction on a pooled connection (committed, or rolled back on an error);
        InboxUnavailable when the database does not answer, a lock stays held past the wait (a frozen
        holder), or every connection stays busy."""
        import psycopg2

        try:
            with self.pool.connection() as connection:
                try:
                    if not self._schema_ready:
                        with connection, connection.cursor() as cursor:
                            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (INBOX_LOCK,))
                            for statement in SCHEMA.split(";"):
                                cursor.execute(statement)
                        self._schema_ready = True
                    with connection, connection.cursor() as cursor:  # commits, or rolls back on any error
                        yield cursor
                except psycopg2.Error as err:
                    with contextlib.suppress(psycopg2.Error):
                        connection.close()  # never handed out again
                    raise InboxUnavailable(f"the feedback database failed ({type(err).__name__})") from None
        except PoolExhausted as err:
            raise InboxUnavailable(str(err)) from None
        except psycopg2.Error as err:  # could not connect
            raise InboxUnavailable(f"the feedback database does not answer ({type(err).__name__})") from None

    def _store(
        self, rows: list[tuple[str, str, str | None, bytes]], check_retry: Callable[[bytes], None] | None = None
    ) -> None:
        """Insert ``rows`` (name, kind, sha256, bytes) within the quota, in one transaction; a row whose
        name is already stored (the same photo again) is kept once and costs nothing. ``check_retry``
        sees a record row already stored (a retry) and may refuse it."""
        with self._transaction() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (INBOX_LOCK,))
            cursor.execute("SELECT name, kind, data FROM inbox_files WHERE name = ANY(%s)", ([r[0] for r in rows],))
            found = cursor.fetchall()
            present = {name for name, _, _ in found}
            for _, kind, data in found:
                if kind == "record" and check_retry is not None:
                    check_retry(bytes(data))
            new = [r for r in rows if r[0] not in present]
            cursor.execute("SELECT COALESCE(SUM(bytes), 0), COUNT(*) FROM inbox_files")
            used, files = cursor.fetchone()
            full = refusal(used, files, sum(len(r[3]) for r in new), len(new), self.max_bytes, self.max_files)
            if full is not None:
                raise InboxFull(full)
            for name, kind, sha, data in new:
                cursor.execute(
                    "INSERT INTO inbox_files (name, kind, sha256, data, bytes) VALUES (%s, %s, %s, %s, %s)",
                    (name, kind, sha, data, len(data)),
                )

    def store_photo(
        self, data: bytes, suffix: str, label: str | None, record_id: str | None = None, **meta: Any
    ) -> str:
        sha = sha256_bytes(data)
        photo = f"{sha}.{suffix}"
        text, digest = inbox.record_text(kind="photos", sha256=sha, photo=photo, label=label, **meta)
        record = f"{inbox.PHOTOS}/{sha}-{record_id or digest[:16]}.json"  # a retry's rows are present: kept once
        rows: list[tuple[str, str, str | None, bytes]] = [
            (f"{inbox.PHOTOS}/{photo}", "photo", sha, data),
            (record, "record", sha, text.encode()),
        ]
        self._store(rows, (lambda stored: same_upload(stored, label)) if record_id else None)
        return sha

    def store_measurement(self, values: list[float], label: str, **meta: Any) -> str:
        text, digest = inbox.record_text(kind="measurements", values=values, label=label, **meta)
        record_id = f"feedback-{digest[:16]}"
        self._store([(f"{inbox.MEASUREMENTS}/{record_id}.json", "record", None, text.encode())])
        return record_id

    def voter_salt(self) -> bytes:
        with self._transaction() as cursor:
            cursor.execute(
                "INSERT INTO inbox_meta (key, value) VALUES ('voter_salt', %s) ON CONFLICT (key) DO NOTHING",
                (os.urandom(32),),
            )
            cursor.execute("SELECT value FROM inbox_meta WHERE key = 'voter_salt'")
            return bytes(cursor.fetchone()[0])

    def usage(self) -> tuple[int, int]:
        with self._transaction() as cursor:
            cursor.execute("SELECT COALESCE(SUM(bytes), 0), COUNT(*) FROM inbox_files")
            used, files = cursor.fetchone()
            return int(used), int(files)

    def _store_text(self, name: str, text: str, kind: str) -> None:
        with self._transaction() as cursor:
            cursor.execute(
                "INSERT INTO inbox_files (name, kind, sha256, data, bytes) VALUES (%s, %s, NULL, %s, %s) "
                "ON CONFLICT (name) DO NOTHING",
                (name, kind, text.encode(), len(text.encode())),
            )

    def store_decision(self, name: str, text: str) -> None:
        self._store_text(name, text, "decision")

    def store_catalog_edit(self, name: str, text: str) -> None:
        self._store_text(name, text, "catalog")

    def catalog_files(self, skip: frozenset[str] = frozenset()) -> list[tuple[str, bytes]]:
        with self._transaction() as cursor:
            cursor.execute(
                "SELECT name, data FROM inbox_files WHERE kind = 'catalog' AND NOT (name = ANY(%s)) ORDER BY name",
                (sorted(skip),),
            )
            return [(name, bytes(data)) for name, data in cursor.fetchall()]

    def review_files(self) -> list[tuple[str, bytes]]:
        with self._transaction() as cursor:
            cursor.execute("SELECT name, data FROM inbox_files WHERE kind IN ('record', 'decision') ORDER BY name")
            return [(name, bytes(data)) for name, data in cursor.fetchall() if not name.startswith(inbox.MEASUREMENTS)]

    def photo(self, sha256: str) -> tuple[bytes, str] | None:
        with self._transaction() as cursor:
            cursor.execute("SELECT name, data FROM inbox_files WHERE kind = 'photo' AND sha256 = %s", (sha256,))
            row = cursor.fetchone()
        return None if row is None else (bytes(row[1]), row[0].rsplit(".", 1)[-1])

    def export(self, folder: Path) -> int:
        """Write every stored file into ``folder`` under its name (the directory inbox's layout, byte for
        byte; files already there with the same bytes are left alone); returns how many were written.
        `bunga merge` reads the folder as it reads a directory inbox, so the same content gives the same
        manifest entries (``feedback/photos/<sha256>.<suffix>``, ``feedback/photos/<sha256>-<id>.json``,
        ``feedback/measurements/feedback-<id>.json``) and the same dataset digest."""
        written = 0
        with self._transaction() as cursor:
            cursor.execute("SELECT name, data FROM inbox_files ORDER BY name")
            while rows := cursor.fetchmany(100):
                for name, data in rows:
                    try:
                        target = inbox.inside(folder, name)
                    except BungaError as err:  # a row written by something other than bunga: never followed
                        log.warning("%s", err)
                        continue
                    if target.is_file() and target.read_bytes() == bytes(data):
                        continue
                    atomic_write_bytes(target, bytes(data))
                    written += 1
        return written


def open_inbox(
    folder: Path, url: str | None, max_bytes: int, max_files: int, pool_size: int = 4, wait_s: float = 3.0
) -> DirectoryInbox | PostgresInbox:
    """The database inbox when ``url`` is set (``pool_size`` connections per process, waits of at most
    ``wait_s``), otherwise the folder."""
    if url:
        return PostgresInbox(url, max_bytes, max_files, pool_size, wait_s)
    return DirectoryInbox(folder, max_bytes, max_files)


def export_if_database(folder: Path, url: str | None) -> int:
    """Before a merge or a monitoring check: bring a database inbox's files into ``folder``."""
    if not url:
        return 0
    return PostgresInbox(url, 2**62, 2**62).export(folder)
