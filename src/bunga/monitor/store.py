"""Where the prediction log lives: a SQLite file (embedded, the default) or PostgreSQL by URL
(several hosts). One small wrapper gives both the same calls; SQL is written with ``?`` markers."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

from bunga.errors import BungaError
from bunga.postgres import connect

log = logging.getLogger("bunga.monitor")

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    ts {real} NOT NULL, kind TEXT NOT NULL, model TEXT NOT NULL, version TEXT NOT NULL, arm TEXT NOT NULL,
    predicted TEXT, top_prob {real} NOT NULL, recognised INTEGER NOT NULL, abstain_score {real},
    latency_ms {real}, f1 {real}, f2 {real}, f3 {real}, f4 {real}, photo_sha256 TEXT, signature {blob},
    band TEXT, observation_id TEXT, observation_photos INTEGER
);
CREATE INDEX IF NOT EXISTS predictions_ts ON predictions (ts);
CREATE INDEX IF NOT EXISTS predictions_sha ON predictions (photo_sha256)
"""
# An answer computed on a phone is sent again when the answer to its first upload was lost: the same
# time, kind, photo (or first measurement) from the "phone" arm is one answer, kept once (the INSERT
# says ON CONFLICT DO NOTHING). Served answers are never collapsed: the index covers phone rows only.
PHONE_INDEX = (
    "CREATE UNIQUE INDEX IF NOT EXISTS predictions_phone ON predictions "
    "(ts, kind, COALESCE(photo_sha256, ''), COALESCE(f1, -1)) WHERE arm = 'phone'"
)


SCHEMA_LOCK = 0x62756E6761  # "bunga": the advisory lock that serialises creating the schema
# Columns added after a log's table was first made (CREATE TABLE IF NOT EXISTS leaves an existing
# table as it was): each is added at start-up when missing, old rows hold NULL.
MIGRATIONS = (("band", "TEXT"), ("observation_id", "TEXT"), ("observation_photos", "INTEGER"))
# made after the migrations (a log from before them has no such column until then)
OBSERVATION_INDEX = "CREATE INDEX IF NOT EXISTS predictions_observation ON predictions (observation_id)"


def is_url(target: str | Path) -> bool:
    """True for a PostgreSQL URL, False for a SQLite file path."""
    return str(target).startswith(("postgresql://", "postgres://"))


class Store:
    """A DB-API connection to the log, SQLite or PostgreSQL, with ``?`` markers either way."""

    def __init__(self, connection: Any, postgres: bool) -> None:
        self.connection, self.postgres = connection, postgres

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.postgres else sql

    def execute(self, sql: str, args: Any = ()) -> Any:
        """Run one statement; returns a cursor (``fetchone``, ``fetchall``, ``fetchmany``)."""
        cursor = self.connection.cursor()
        cursor.execute(self._sql(sql), tuple(args))
        return cursor

    def executemany(self, sql: str, rows: list[Any]) -> None:
        """Run one statement for many rows, in one transaction."""
        cursor = self.connection.cursor()
        cursor.executemany(self._sql(sql), rows)
        self.connection.commit()

    def commit(self) -> None:
        """Commit the open transaction."""
        self.connection.commit()

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()


def open_store(target: str | Path, read_only: bool = False) -> Store:
    """Connect to the log (creating the file, database and table as needed unless ``read_only``)."""
    if is_url(target):
        store = Store(connect(str(target)), postgres=True)
        if not read_only:
            # Workers starting together would race on CREATE ... IF NOT EXISTS (PostgreSQL then fails
            # one with a unique violation): a transaction-level advisory lock makes them take turns.
            store.execute("SELECT pg_advisory_xact_lock(?)", (SCHEMA_LOCK,))
            for statement in SCHEMA.format(real="DOUBLE PRECISION", blob="BYTEA").split(";"):
                store.execute(statement)
            for column, kind in MIGRATIONS:
                store.execute(f"ALTER TABLE predictions ADD COLUMN IF NOT EXISTS {column} {kind}")
            store.execute(OBSERVATION_INDEX)
            store.execute("SAVEPOINT phone_index")
            try:
                store.execute(PHONE_INDEX)
            except Exception as err:  # psycopg's own exception types
                store.execute("ROLLBACK TO SAVEPOINT phone_index")
                _unindexed(err)
            store.commit()
        return store
    path = Path(target)
    if read_only:
        if not path.is_file():
            raise BungaError(f"no prediction log at {path}: serve some predictions first (BUNGA_MONITOR_DB)")
        return Store(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30), postgres=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=30, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(SCHEMA.format(real="REAL", blob="BLOB"))
    present = {row[1] for row in db.execute("PRAGMA table_info(predictions)")}
    for column, kind in MIGRATIONS:
        if column not in present:
            db.execute(f"ALTER TABLE predictions ADD COLUMN {column} {kind}")
    db.execute(OBSERVATION_INDEX)
    try:
        db.execute(PHONE_INDEX)
    except sqlite3.DatabaseError as err:
        _unindexed(err)
    return Store(db, postgres=False)


def _unindexed(err: Exception) -> None:
    """A log written before phone answers were de-duplicated may hold a repeated one: the index cannot
    be made, and the log still works (repeats are then kept)."""
    log.warning("prediction log: phone answers are not de-duplicated (%s): remove repeated phone rows", err)


def server_versions(target: str | Path) -> set[tuple[str, str]]:
    """(kind, version) of every model version the log holds a server's answer of (phone rows do not
    count: a phone's claim is not evidence that this deployment served a version); empty when there
    is no log yet."""
    try:
        db = open_store(target, read_only=True)
    except BungaError:
        return set()
    try:
        rows = db.execute("SELECT DISTINCT kind, version FROM predictions WHERE arm <> 'phone'").fetchall()
        return {(str(kind), str(version)) for kind, version in rows}
    except Exception as err:  # sqlite3's or psycopg's: a log without its table yet, or one that is down
        log.warning("prediction log: served versions not read (%s)", type(err).__name__)
        return set()
    finally:
        db.close()


def observation_photos(target: str | Path, observation_id: str) -> set[str]:
    """The photo sha256s the server answered as one observation (empty: unknown here, or no log)."""
    try:
        db = open_store(target, read_only=True)
    except BungaError:
        return set()
    try:
        sql = "SELECT DISTINCT photo_sha256 FROM predictions WHERE observation_id = ? AND arm <> 'phone'"
        return {str(sha) for (sha,) in db.execute(sql, (observation_id,)).fetchall() if sha}
    except Exception as err:  # sqlite3's or psycopg's: an old log without the column, or one that is down
        log.warning("prediction log: observation not read (%s)", type(err).__name__)
        return set()
    finally:
        db.close()


def columns(db: Store) -> set[str]:
    """The columns the log's table has (an old log read without migrating may lack new ones); ``db``
    may also be a plain sqlite3 connection."""
    if getattr(db, "postgres", False):
        sql = "SELECT column_name FROM information_schema.columns WHERE table_name = 'predictions'"
        return {str(name) for (name,) in db.execute(sql).fetchall()}
    return {str(row[1]) for row in db.execute("PRAGMA table_info(predictions)").fetchall()}
