"""Where visitors' feedback is kept, behind one interface (:class:`Inbox`): a folder (the default,
also what `bunga merge` reads; :mod:`bunga.garden.folder_inbox`) or a PostgreSQL database
(``BUNGA_INBOX_DB``; replicas that share no disk, e.g. Heroku dynos and Fargate tasks;
:mod:`bunga.garden.database_inbox`). Both take the same calls, enforce the same quota and write the
same records; the database is exported to the folder layout, byte for byte, before a merge."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from bunga.garden.database_inbox import PostgresInbox
from bunga.garden.folder_inbox import DirectoryInbox
from bunga.garden.records import InboxConflict, InboxFull, InboxUnavailable

__all__ = ["Inbox", "InboxConflict", "InboxFull", "InboxUnavailable", "export_if_database", "open_inbox"]


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
