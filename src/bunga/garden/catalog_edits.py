"""Curators' additions and edits to the species catalogue, made on the review page or with
``bunga catalog add``: one record per edit in the inbox (``catalog/<id>-<ns>-<curator>.json``),
never changed; the latest edit of a species wins and the earlier ones stay. The merge writes the
catalogue with the edits applied into the dataset version; serving re-reads them while it runs."""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from bunga.catalog import Catalog, SpeciesInfo
from bunga.errors import BungaError
from bunga.schemas import RESERVED_IDS, curator_name

CATALOG = "catalog"
SPECIES_ID = re.compile(r"^[a-z][a-z0-9_]{1,59}$")
TEXT_LIMITS = {"nama": 100, "name": 100, "latin": 100, "famili": 60, "deskripsi": 1000, "description": 1000}


@dataclass(frozen=True)
class Edit:
    """One curator's entry for one species, with its reference photo (a small JPEG) when given."""

    info: SpeciesInfo
    curator: str
    at_ns: int
    reference_jpeg: bytes | None


def species_id(raw: str) -> str:
    """The class id for a typed species id (lower case, words joined by '_'), or a BungaError saying
    what an id must look like."""
    text = re.sub(r"[\s\-]+", "_", raw.strip().lower())
    if not SPECIES_ID.match(text):
        raise BungaError(
            f"species id {raw[:60]!r} is not usable as a class: "
            "2-60 characters of a-z, 0-9 and '_', starting with a letter"
        )
    if text in RESERVED_IDS:
        raise BungaError(f"{text!r} is a decision word, not a species id (reserved: {', '.join(sorted(RESERVED_IDS))})")
    return text


def _control(text: str) -> str | None:
    """The first control or line-separator character in ``text`` (a tab or newline would break
    `bunga catalog list`'s lines and the page's one-line names), or None."""
    return next((c for c in text if unicodedata.category(c) in ("Cc", "Zl", "Zp")), None)


def entry(raw_id: str, fields: dict[str, str], previous: SpeciesInfo | None = None) -> SpeciesInfo:
    """A validated catalogue entry from typed fields (``nama`` required; each text within its limit,
    without control characters). A field not given keeps ``previous``'s value: an edit changes only
    what it names."""
    kept = previous.model_dump() if previous is not None else {}
    clean = {key: (fields[key] if key in fields else kept.get(key) or "").strip() for key in TEXT_LIMITS}
    if not clean["nama"]:
        raise BungaError("a species needs its name (nama) in Bahasa Indonesia")
    for key, limit in TEXT_LIMITS.items():
        if len(clean[key]) > limit:
            raise BungaError(f"{key} is {len(clean[key])} characters, over the limit of {limit}")
        if (bad := _control(clean[key])) is not None:
            raise BungaError(f"{key} holds a control character ({bad!r}): one line of plain text")
    return SpeciesInfo(id=species_id(raw_id), **clean)


def edit(
    base: Catalog, inbox: _EditSource, raw_id: str, fields: dict[str, str], reference_jpeg: bytes | None, curator: str
) -> tuple[SpeciesInfo, str, str]:
    """A curator's edit of one species over what is in force (``base`` with the inbox's edits): the
    validated entry and (file name, text) of its record. Fields not given and a reference photo not
    given are kept from the entry in force."""
    sid = species_id(raw_id)
    edits = latest([e for _, data in inbox.catalog_files() if (e := parse(data)) is not None])
    previous = edits.get(sid)
    info = entry(sid, fields, previous.info if previous else base.entries.get(sid))
    jpeg = reference_jpeg if reference_jpeg is not None else (previous.reference_jpeg if previous else None)
    name, text = record(info, curator, jpeg)
    return info, name, text


def record(info: SpeciesInfo, curator: str, reference_jpeg: bytes | None = None) -> tuple[str, str]:
    """(file name relative to the inbox, text) of a new catalogue edit; the name is built from
    validated parts only (a species id and a curator name; ValueError otherwise)."""
    species_id(info.id)
    curator_name(curator)
    at_ns = time.time_ns()
    body = {
        "kind": "species",
        **info.model_dump(exclude={"known", "added"}),
        "curator": curator,
        "at_ns": at_ns,
        "time": datetime.fromtimestamp(at_ns / 1e9, UTC).isoformat(timespec="microseconds"),
        "reference_jpeg": base64.b64encode(reference_jpeg).decode() if reference_jpeg else None,
    }
    name = f"{CATALOG}/{info.id}-{at_ns}-{curator}.json"
    return name, json.dumps(body, sort_keys=True, ensure_ascii=False) + "\n"


def parse(text: str | bytes) -> Edit | None:
    """The edit in a record's text; None when it is not one."""
    try:
        body = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(body, dict) or body.get("kind") != "species":
        return None
    curator, at_ns, photo = body.get("curator"), body.get("at_ns"), body.get("reference_jpeg")
    if not isinstance(curator, str) or not isinstance(at_ns, int) or not isinstance(body.get("id"), str):
        return None
    try:
        info = entry(body["id"], {k: v for k, v in body.items() if k in TEXT_LIMITS and isinstance(v, str)})
        jpeg = base64.b64decode(photo, validate=True) if isinstance(photo, str) else None
    except (BungaError, ValidationError, binascii.Error):
        return None
    return Edit(info, curator, at_ns, jpeg)


def read(path: Path) -> Edit | None:
    """The edit in a record file; None when the file is not one."""
    try:
        return parse(path.read_bytes())
    except OSError:
        return None


def latest(edits: list[Edit]) -> dict[str, Edit]:
    """The edit in force for each species: the latest (ties: by curator name)."""
    out: dict[str, Edit] = {}
    for edit in sorted(edits, key=lambda e: (e.at_ns, e.curator)):
        out[edit.info.id] = edit
    return out


def apply(base: Catalog, edits: list[Edit]) -> Catalog:
    """The catalogue with the edits in force applied over ``base`` (new species join it, marked ``added``)."""
    edited = {
        sid: edit.info.model_copy(update={"added": sid not in base.entries}) for sid, edit in latest(edits).items()
    }
    return Catalog({**base.entries, **edited})


class _EditSource(Protocol):
    def catalog_files(self, skip: frozenset[str] = ...) -> list[tuple[str, bytes]]: ...


def current(base: Catalog, inbox: _EditSource) -> Catalog:
    """``base`` with every catalogue edit the inbox holds applied (what the review page shows)."""
    return apply(base, [edit for _, data in inbox.catalog_files() if (edit := parse(data)) is not None])
