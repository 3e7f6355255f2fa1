"""The prediction log: one row per prediction, written off the request path.

Requests append records to a bounded deque and never wait: when it is full the record is dropped and
counted. Answers phones report (arm ``phone``) wait in a deque of their own, so a flood of them is
dropped before it can push out a single server answer. Appending takes no lock and wakes nobody (a
`queue.Queue` notified the writer on every record, which cost the event loop the GIL once per
request). One background thread per worker wakes every `FLUSH_S`, drains the deques and writes them
in batches to the store (a SQLite file in WAL mode, which the workers and replicas of one machine
share safely, or PostgreSQL by URL) and prunes records older than the retention. The log holds no
photo and no client address: a photo appears only as its sha256 (to join feedback).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from bunga.monitor.store import Store, open_store

log = logging.getLogger("bunga.monitor")
FLUSH_S = 0.25  # the writer drains this often: about what a kill -9 can lose
BATCH = 1000  # rows per transaction
PRUNE_EVERY_S = 3600.0

COLUMNS = (
    "ts, kind, model, version, arm, predicted, top_prob, recognised, abstain_score, "
    "latency_ms, f1, f2, f3, f4, photo_sha256, signature, band, observation_id, observation_photos"
)
ROW = "(" + ", ".join("?" * 19) + ")"
STATEMENT_ROWS = 250  # rows per INSERT: 4,750 parameters, under every SQLite's and PostgreSQL's limit


def insert_sql(rows: int) -> str:
    """One INSERT of `rows` rows. A statement per row (executemany) released and retook the GIL for
    every row, and each retake pulled the event loop off the CPU: one statement per few hundred."""
    values = ", ".join([ROW] * rows)  # a phone answer sent twice is kept once (store.PHONE_INDEX)
    return f"INSERT INTO predictions ({COLUMNS}) VALUES {values} ON CONFLICT DO NOTHING"  # noqa: S608 (constants)


INSERT = insert_sql(1)  # one row, for executemany (bulk loads)


PHONE_ARM = "phone"  # answers computed on a phone and reported to /predictions/phone: a claim


class Record(NamedTuple):
    """One prediction, as logged."""

    ts: float
    kind: str
    model: str
    version: str
    arm: str  # champion | challenger (the server's answers) | phone
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
    band: str | None = None  # photos: sure | possible | not_recognised | not_a_flower
    observation_id: str | None = None  # photos sent as one observation (one plant): the server's id
    observation_photos: int | None = None  # how many photos that observation had


class PredictionLog:
    """A bounded, lock-free deque in front of a background writer."""

    def __init__(
        self, target: str | Path, capacity: int, retention_days: float, on_drop: Callable[[int], None] = lambda _: None
    ) -> None:
        self.target, self.retention_s = target, retention_days * 86400.0
        self.capacity = capacity
        self.pending: deque[Record] = deque()
        self.pending_phone: deque[Record] = deque()  # its own capacity: never takes a server row's place
        self.on_drop = on_drop
        self.dropped = 0
        self.written = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the writer thread (again, after a close: an app's lifespan may run more than once)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="bunga-prediction-log", daemon=True)
            self._thread.start()

    def add(self, record: Record) -> None:
        """Queue a record; never blocks (a full deque drops it and counts the drop)."""
        pending = self.pending_phone if record.arm == PHONE_ARM else self.pending
        if len(pending) >= self.capacity:
            self.dropped += 1
            self.on_drop(1)
            return
        pending.append(record)  # atomic under the GIL: no lock, no wake-up

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout)
        self._thread = None

    def _take(self) -> list[Record]:
        """Up to BATCH records, the server's first, each deque oldest first."""
        batch = [self.pending.popleft() for _ in range(min(len(self.pending), BATCH))]
        phone = self.pending_phone
        return batch + [phone.popleft() for _ in range(min(len(phone), BATCH - len(batch)))]

    def _run(self) -> None:
        db: Store | None = None
        pruned_at = 0.0
        done = False
        while not done:
            done = self._stop.wait(FLUSH_S)  # after a close: one last drain, then stop
            while True:
                batch = self._take()
                due = time.monotonic() - pruned_at >= PRUNE_EVERY_S
                if not batch and not (due and db is not None):
                    break  # nothing to write: the store is not even created until there is
                db = self._write(db, batch)
                if db is not None and due:
                    db = self._prune(db)
                    pruned_at = time.monotonic()
                if len(batch) < BATCH:
                    break
        if db is not None:
            db.close()

    def _write(self, db: Store | None, batch: list[Record]) -> Store | None:
        """Insert one batch; a store that is down, locked or gone costs the batch (counted), not the service."""
        try:
            db = db or open_store(self.target)
            for at in range(0, len(batch), STATEMENT_ROWS):
                chunk = batch[at : at + STATEMENT_ROWS]  # recognised as 0/1: PostgreSQL has no bool to integer
                db.execute(insert_sql(len(chunk)), [v for r in chunk for v in (*r[:7], int(r.recognised), *r[8:])])
            db.commit()
            self.written += len(batch)
            return db
        except Exception as err:
            self.dropped += len(batch)
            self.on_drop(len(batch))
            log.warning("prediction log: %d records dropped: %s", len(batch), type(err).__name__)
            if db is not None:
                with contextlib.suppress(Exception):
                    db.close()
            return None

    def _prune(self, db: Store) -> Store | None:
        """Delete records older than the retention."""
        try:
            db.execute("DELETE FROM predictions WHERE ts < ?", (time.time() - self.retention_s,))
            db.commit()
            return db
        except Exception as err:
            log.warning("prediction log: pruning failed: %s", type(err).__name__)
            with contextlib.suppress(Exception):
                db.close()
            return None
