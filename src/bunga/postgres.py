"""Connecting to PostgreSQL by URL for the prediction log and the feedback inbox: the database is
created when the server has none of that name (a platform hands out a server, not our databases)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bunga.errors import BungaError


def timeouts(wait_s: float) -> str:
    """Session settings (libpq ``options``) so no request waits on the database for long: a lock held
    elsewhere is waited for ``wait_s``, a statement runs at most 4x that, and a session left idle in
    a transaction (a frozen worker holding a lock) is ended by the server after 4x that, releasing
    its locks."""
    ms = max(1, int(wait_s * 1000))
    return f"-c lock_timeout={ms} -c statement_timeout={4 * ms} -c idle_in_transaction_session_timeout={4 * ms}"


class PoolExhausted(BungaError):
    """Every connection of the pool stayed busy for the whole wait."""


class Pool:
    """At most ``size`` connections to ``url`` per process, each used by one thread at a time; a
    thread waits up to ``wait_s`` for one (PoolExhausted after). A connection that failed is closed,
    never handed out again. (psycopg2.pool raises at once when exhausted instead of waiting; the
    connections here also create the database on first use and carry bunga's timeouts.)"""

    def __init__(self, url: str, size: int, wait_s: float) -> None:
        self.url, self.size, self.wait_s = url, size, wait_s
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[Any] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        """A connection for this thread (returned to the pool afterwards unless it broke)."""
        if not self._slots.acquire(timeout=self.wait_s):
            raise PoolExhausted(
                f"all {self.size} database connections of this worker stayed busy for {self.wait_s:g} s"
            )
        connection = None
        try:
            with self._lock:
                connection = self._idle.pop() if self._idle else None
            if connection is None or connection.closed:
                connection = connect(self.url, timeouts(self.wait_s))
            yield connection
        finally:
            if connection is not None and not connection.closed:
                with self._lock:
                    self._idle.append(connection)
            self._slots.release()

    def close(self) -> None:
        """Close the idle connections."""
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            with contextlib.suppress(Exception):
                connection.close()


def connect(url: str, options: str | None = None) -> Any:
    """A psycopg2 connection to ``url`` (with libpq ``options``, e.g. :func:`timeouts`), creating its
    database first when it does not exist."""
    try:
        import psycopg2
    except ImportError as err:
        raise BungaError("a PostgreSQL store needs psycopg2: pip install 'bunga[postgres]'") from err
    extra = {"options": options} if options else {}
    try:
        return psycopg2.connect(url, connect_timeout=5, **extra)
    except psycopg2.OperationalError as err:
        if "does not exist" not in str(err):
            raise
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = psycopg2.connect(urlunsplit(parts._replace(path="/postgres")), connect_timeout=5)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name.replace(chr(34), "")}"')
    except (psycopg2.errors.DuplicateDatabase, psycopg2.errors.UniqueViolation):
        pass  # another worker made it first (the same race can surface as either error)
    finally:
        admin.close()
    return psycopg2.connect(url, connect_timeout=5, **extra)
