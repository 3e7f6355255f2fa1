"""The prediction log's windows: which rows a monitor reads (a time span or the last N, one kind,
version and source) and the small queries over them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bunga.monitor.log import PHONE_ARM
from bunga.monitor.store import Store, columns

SERVER, PHONE = "server", "phone"  # whose answers a report covers: the server's arms, or phones' claims
SOURCES = {SERVER: f"arm <> '{PHONE_ARM}'", PHONE: f"arm = '{PHONE_ARM}'"}


@dataclass
class Window:
    """Which predictions to look at."""

    since: float | None = None  # unix time
    until: float | None = None
    last: int | None = None  # the last N predictions of each kind and version


def window_clause(
    window: Window, kind: str | None = None, version: str | None = None, source: str | None = None
) -> tuple[str, list[Any]]:
    """The WHERE clause (``?`` markers) and its arguments for a window, optionally one kind, version
    and source (the server's answers or the phones')."""
    clauses: list[str] = [SOURCES[source]] if source is not None else ["1 = 1"]
    args: list[Any] = []
    for column, value in (("kind", kind), ("version", version)):
        if value is not None:
            clauses.append(f"{column} = ?")
            args.append(value)
    if window.since is not None:
        clauses.append("ts >= ?")
        args.append(window.since)
    if window.until is not None:
        clauses.append("ts < ?")
        args.append(window.until)
    return " AND ".join(clauses), args


def window_rows(db: Store, columns: str, kind: str, version: str, source: str, window: Window) -> Any:
    """A cursor over the window's rows of one kind, version and source (the last N: newest first)."""
    where, args = window_clause(window, kind, version, source)
    if window.last is not None:  # the last N: newest first, then streamed
        sql = f"SELECT {columns} FROM predictions WHERE {where} ORDER BY ts DESC LIMIT ?"  # noqa: S608
        return db.execute(sql, [*args, window.last])
    return db.execute(f"SELECT {columns} FROM predictions WHERE {where}", args)  # noqa: S608


def versions(db: Store, window: Window) -> list[tuple[str, str, str, str]]:
    """(kind, model, version, source) with predictions in the window, the server's before the phones'."""
    where, args = window_clause(window)
    source = f"CASE WHEN arm = '{PHONE_ARM}' THEN '{PHONE}' ELSE '{SERVER}' END"
    sql = f"SELECT DISTINCT kind, model, version, {source} FROM predictions WHERE {where} ORDER BY 4 DESC, 1, 3"  # noqa: S608
    return [(str(k), str(m), str(v), str(a)) for k, m, v, a in db.execute(sql, args)]


def window_signatures(db: Store, version: str, window: Window, limit: int = 500) -> np.ndarray:
    """Up to ``limit`` of the newest photo signatures the server logged in the window."""
    where, args = window_clause(window, "photos", version, SERVER)
    sql = f"SELECT signature FROM predictions WHERE {where} AND signature IS NOT NULL ORDER BY ts DESC LIMIT ?"  # noqa: S608
    cap = min(limit, window.last) if window.last is not None else limit
    rows = db.execute(sql, [*args, cap]).fetchall()
    if not rows:
        return np.empty((0, 0), dtype=np.float32)
    return np.stack([np.frombuffer(r[0], dtype=np.float16) for r in rows]).astype(np.float32)


def observation_counts(db: Store, version: str, source: str, window: Window) -> dict[str, int]:
    """How many observations (photos of one plant sent together) a version answered, by number of photos."""
    if "observation_id" not in columns(db):
        return {}
    where, args = window_clause(window, "photos", version, source)
    sql = (
        f"SELECT observation_photos, COUNT(DISTINCT observation_id) FROM predictions "  # noqa: S608
        f"WHERE {where} AND observation_id IS NOT NULL GROUP BY observation_photos"
    )
    return {str(n): int(c) for n, c in db.execute(sql, args).fetchall() if n is not None}
