"""The inbox's files, as both backends store them and `bunga merge` reads them: the folder layout,
record names and texts, the file writers of the folder inbox, voter pseudonyms, and the errors an
inbox answers with.

Photos are named by their content hash (never the client's file name); each submission gets its
own metadata record, so concurrent uploads never overwrite one another.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bunga.errors import BungaError
from bunga.files import atomic_write_bytes, atomic_write_text, sha256_bytes

PHOTOS = "photos"
MEASUREMENTS = "measurements"
RECORD_BYTES = 2_000  # what a metadata record counts against the byte quota
RECORD_NAME = re.compile(r"^[a-z]+/[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")  # <folder>/<file>: one level, no '..'


def inside(inbox: Path, name: str) -> Path:
    """Where the record ``name`` lives in the inbox folder; BungaError for a name that would leave it
    (an absolute path, a '..', a deeper folder): a name stored in a database is never trusted."""
    if not RECORD_NAME.match(name) or ".." in name:
        raise BungaError(f"inbox record name {name[:80]!r} is not <folder>/<file> inside the inbox: refused")
    return inbox / name


def record_text(**fields: Any) -> tuple[str, str]:
    """A feedback record as stored (sorted JSON with the time) and the sha256 of that text."""
    fields["time"] = datetime.now(UTC).isoformat(timespec="microseconds")
    text = json.dumps(fields, sort_keys=True, ensure_ascii=False) + "\n"
    return text, sha256_bytes(text.encode())


def store_photo(
    inbox: Path,
    data: bytes,
    suffix: str,
    label: str | None,
    record_id: str | None = None,
    sha: str | None = None,
    **meta: Any,
) -> str:
    """Keep a photo and one metadata record (named by ``record_id`` when the sender gave an
    idempotency key, so a retry rewrites the same record); returns the photo's sha256 (``sha``: the
    caller computed it already)."""
    sha = sha or sha256_bytes(data)
    folder = inbox / PHOTOS
    photo = folder / f"{sha}.{suffix}"
    new = not photo.exists()
    if new:
        atomic_write_bytes(photo, data)
    text, digest = record_text(kind="photos", sha256=sha, photo=photo.name, label=label, **meta)
    try:
        atomic_write_text(folder / f"{sha}-{record_id or digest[:16]}.json", text)
    except OSError:
        if new:  # a photo without its record would wait for a curator for no reason: take it back
            photo.unlink(missing_ok=True)
        raise
    return sha


def store_measurement(inbox: Path, values: list[float], label: str, **meta: Any) -> str:
    """Keep one labelled measurement as one record (a curator decides whether it becomes a training
    row: bunga.garden.measurement_review); returns its record id."""
    text, digest = record_text(kind="measurements", values=values, label=label, **meta)
    record_id = f"feedback-{digest[:16]}"
    atomic_write_text(inbox / MEASUREMENTS / f"{record_id}.json", text)
    return record_id


def usage(inbox: Path) -> tuple[int, int]:
    """(bytes, files) stored in the inbox."""
    total, count = 0, 0
    for folder in (inbox / PHOTOS, inbox / MEASUREMENTS):
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            continue
        for entry in entries:
            try:
                total += entry.stat(follow_symlinks=False).st_size
                count += 1
            except FileNotFoundError:  # removed while we looked
                continue
    return total, count


SALT_FILE = ".voter-salt"


def voter_salt(inbox: Path) -> bytes:
    """The inbox's secret for voter pseudonyms, made once (every worker and replica sharing the
    inbox reads the same one, so one client is one voter everywhere)."""
    path = inbox / SALT_FILE
    inbox.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(100):  # another worker is writing it right now
            salt = path.read_bytes()
            if len(salt) == 32:
                return salt
            time.sleep(0.01)
        raise
    salt = os.urandom(32)
    with os.fdopen(fd, "wb") as handle:
        handle.write(salt)
    return salt


def voter(salt: bytes, client: str) -> str:
    """A pseudonym for a client address: counts distinct voters, never stores the address."""
    return hmac.new(salt, client.encode(), hashlib.sha256).hexdigest()[:16]


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
