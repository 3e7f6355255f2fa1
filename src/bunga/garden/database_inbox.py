"""The database inbox (``BUNGA_INBOX_DB``): each file of the folder layout is one row of a PostgreSQL
table, so replicas that share no disk share one inbox, its quota and its records."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bunga.errors import BungaError
from bunga.files import atomic_write_bytes, sha256_bytes
from bunga.garden import records
from bunga.garden.quota import refusal
from bunga.garden.records import InboxFull, InboxUnavailable, same_upload
from bunga.postgres import Pool, PoolExhausted

log = logging.getLogger("bunga.garden.records")
INBOX_LOCK = 0x62756E6769  # "bungi": the advisory lock that serialises the quota check and the insert


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
        text, digest = records.record_text(kind="photos", sha256=sha, photo=photo, label=label, **meta)
        record = f"{records.PHOTOS}/{sha}-{record_id or digest[:16]}.json"  # a retry's rows are present: kept once
        rows: list[tuple[str, str, str | None, bytes]] = [
            (f"{records.PHOTOS}/{photo}", "photo", sha, data),
            (record, "record", sha, text.encode()),
        ]
        self._store(rows, (lambda stored: same_upload(stored, label)) if record_id else None)
        return sha

    def store_measurement(self, values: list[float], label: str, **meta: Any) -> str:
        text, digest = records.record_text(kind="measurements", values=values, label=label, **meta)
        record_id = f"feedback-{digest[:16]}"
        self._store([(f"{records.MEASUREMENTS}/{record_id}.json", "record", None, text.encode())])
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
            return [
                (name, bytes(data)) for name, data in cursor.fetchall() if not name.startswith(records.MEASUREMENTS)
            ]

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
                        target = records.inside(folder, name)
                    except BungaError as err:  # a row written by something other than bunga: never followed
                        log.warning("%s", err)
                        continue
                    if target.is_file() and target.read_bytes() == bytes(data):
                        continue
                    atomic_write_bytes(target, bytes(data))
                    written += 1
        return written
