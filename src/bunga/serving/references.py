"""The photo model's reference photos: one small typical training photo per species, from its card."""

from __future__ import annotations

import base64
from urllib.parse import quote

from bunga.serving.schemas import ReferenceInfo
from bunga.serving.store import ModelStore, Slot


def reference_info(slot: Slot, species: str) -> ReferenceInfo | None:
    """The URL and credit of the reference photo ``slot``'s model carries for ``species``, if any."""
    ref = slot.card.references.get(species)
    if ref is None:
        return None
    url = f"/species/{quote(species, safe='')}/photo?version={quote(slot.version, safe='')}"
    return ReferenceInfo(url=url, licence=ref.licence, link=ref.link)


def reference_jpeg(store: ModelStore, species: str, version: str | None) -> bytes | None:
    """The reference photo of ``species`` from the photo model of that version (the champion when
    none is given, or when the version asked for is no longer loaded)."""
    slots = [s for s in (store.champions.get("photos"), store.challengers.get("photos")) if s is not None]
    chosen = next((s for s in slots if s.version == version), slots[0] if slots else None)
    ref = chosen.card.references.get(species) if chosen is not None else None
    return base64.b64decode(ref.jpeg_base64) if ref is not None else None
