"""The prediction log: one row per prediction, written off the request path.

Requests put records on a bounded queue and never wait: when it is full the record is dropped and
counted. One background thread per worker writes batches to SQLite (WAL, so several workers and
replicas on one machine share the file safely) and prunes records older than the retention. The
log holds no photo and no client address: a photo appears only as its sha256 (to join feedback).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

log = logging.getLogger("bunga.monitor")
FLUSH_S = 0.5  # at most this long between a prediction and its row (what a kill -9 can lose)
PRUNE_EVERY_S = 3600.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    ts REAL NOT NULL, kind TEXT NOT NULL, model TEXT NOT NULL, version TEXT NOT NULL, arm TEXT NOT NULL,
    predicted TEXT, top_prob REAL NOT NULL, recognised INTEGER NOT NULL, abstain_score REAL,
    latency_ms REAL, f1 REAL, f2 REAL, f3 REAL, f4 REAL, photo_sha256 TEXT, signature BLOB
);
CREATE INDEX IF NOT EXISTS predictions_ts ON predictions (ts);
CREATE INDEX IF NOT EXISTS predictions_sha ON predictions (photo_sha256);
"""
INSERT = (
    "INSERT INTO predictions (ts, kind, model, version, arm, predicted, top_prob, recognised, abstain_score, "
    "latency_ms, f1, f2, f3, f4, photo_sha256, signature) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class Record(NamedTuple):
    """One prediction, as logged."""

    ts: float
    kind: str
    model: str
    version: str
    arm: str  # champion | challenger
    predicted: str | None  # None: not recognised
    top_prob: float
    recognised: bool
    abstain_score: float | None
    latency_ms: float
    f1: float | None = None
    f2: float | None = None
    f3: float | None = None
    f4: float | None = None
    photo_sha256: str | None = None
    signature: bytes | None = None  # photos: the monitoring signature, float16


def connect(path: Path) -> sqlite3.Connection:
    """The log's database, created when missing, in WAL mode with a generous busy timeout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=30, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(SCHEMA)
    return db


class PredictionLog:
    """A bounded queue in front of a background SQLite writer."""

    def __init__(
        self, path: Path, capacity: int, retention_days: float, on_drop: Callable[[int], None] = lambda _: None
    ) -> None:
        self.path, self.retention_s = path, retention_days * 86400.0
        self.queue: queue.Queue[Record | None] = queue.Queue(maxsize=capacity)
        self.on_drop = on_drop
        self.dropped = 0
        self.written = 0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the writer thread (again, after a close: an app's lifespan may run more than once)."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="bunga-prediction-log", daemon=True)
            self._thread.start()

    def add(self, record: Record) -> None:
        """Queue a record; never blocks (a full queue drops it and counts the drop)."""
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1
            self.on_drop(1)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop."""
        if self._thread is None:
            return
        with contextlib.suppress(queue.Full):
            self.queue.put(None, timeout=timeout)
        self._thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        db: sqlite3.Connection | None = None
        pruned_at = 0.0
        done = False
        while not done:
            batch: list[Record] = []
            try:
                item = self.queue.get(timeout=FLUSH_S)
                while item is not None:
                    batch.append(item)
                    if len(batch) >= 1000:
                        break
                    item = self.queue.get_nowait()
                done = item is None
            except queue.Empty:
                pass
            if not batch and (db is None or time.monotonic() - pruned_at < PRUNE_EVERY_S):
                continue  # nothing to write: the store is not even created until there is
            try:
                db = db or connect(self.path)
                with db:
                    db.executemany(INSERT, batch)
                self.written += len(batch)
                if time.monotonic() - pruned_at >= PRUNE_EVERY_S:
                    with db:
                        db.execute("DELETE FROM predictions WHERE ts < ?", (time.time() - self.retention_s,))
                    pruned_at = time.monotonic()
            except sqlite3.Error as err:  # the store is down or locked for too long: count, keep serving
                self.dropped += len(batch)
                self.on_drop(len(batch))
                log.warning("prediction log: %d records dropped: %s", len(batch), err)
                db = None
        if db is not None:
            db.close()
