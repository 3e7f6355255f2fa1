"""Connecting to PostgreSQL by URL for the prediction log and the feedback inbox: the database is
created when the server has none of that name (a platform hands out a server, not our databases)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bunga.errors import BungaError


def connect(url: str) -> Any:
    """A psycopg2 connection to ``url``, creating its database first when it does not exist."""
    try:
        import psycopg2
    except ImportError as err:
        raise BungaError("a PostgreSQL store needs psycopg2: pip install 'bunga[postgres]'") from err
    try:
        return psycopg2.connect(url, connect_timeout=5)
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
    return psycopg2.connect(url, connect_timeout=5)
