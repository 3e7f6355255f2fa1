"""The prediction log: one row per prediction, written off the request path.

Requests put records on a bounded queue and never wait: when it is full the record is dropped and
counted. One background thread per worker writes batches to the store (a SQLite file in WAL mode,
which the workers and replicas of one machine share safely, or PostgreSQL by URL) and prunes
records older than the retention. The
log holds no photo and no client address: a photo appears only as its sha256 (to join feedback).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from bunga.monitor.store import Store, open_store

log = logging.getLogger("bunga.monitor")
FLUSH_S = 0.5  # at most this long between a prediction and its row (what a kill -9 can lose)
PRUNE_EVERY_S = 3600.0

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


class PredictionLog:
    """A bounded queue in front of a background SQLite writer."""

    def __init__(
        self, target: str | Path, capacity: int, retention_days: float, on_drop: Callable[[int], None] = lambda _: None
    ) -> None:
        self.target, self.retention_s = target, retention_days * 86400.0
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
        db: Store | None = None
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
                db = db or open_store(self.target)
                if batch:  # recognised as 0/1: PostgreSQL will not put a boolean in an integer column
                    db.executemany(INSERT, [(*r[:7], int(r.recognised), *r[8:]) for r in batch])
                self.written += len(batch)
                if time.monotonic() - pruned_at >= PRUNE_EVERY_S:
                    db.execute("DELETE FROM predictions WHERE ts < ?", (time.time() - self.retention_s,))
                    db.commit()
                    pruned_at = time.monotonic()
            except Exception as err:  # the store is down, locked or gone: count the loss, keep serving
                self.dropped += len(batch)
                self.on_drop(len(batch))
                log.warning("prediction log: %d records dropped: %s", len(batch), type(err).__name__)
                if db is not None:
                    with contextlib.suppress(Exception):
                        db.close()
                db = None
        if db is not None:
            db.close()
