"""Curators' label sheets, the records the merge reads beside the inbox: ``sha256,label`` for photos
(written by `bunga review import` into ``collected_data/labels/``, or by hand), ``record_id,label``
for visitors' measurements; and the name of the review queue sheet the merge writes for curators."""

from __future__ import annotations

import csv
from pathlib import Path

from bunga.schemas import normalise

LABEL_HEADER = ("sha256", "label")
REVIEW_CSV = "review_queue.csv"  # the photos waiting for a curator, written by the merge into the dataset


def is_label_sheet(header: list[str], columns: tuple[str, str] = LABEL_HEADER) -> bool:
    """True when a CSV header is a label sheet (``sha256,label`` for photos, or ``columns``) rather
    than measurements."""
    return tuple(normalise(h.lstrip("\ufeff")) for h in header[:2]) == columns


def read_label_sheet(path: Path, key: str = "sha256") -> dict[str, str]:
    """``key`` -> label from a curator's or the review command's label sheet (empty labels skipped;
    photo sha256s lower-cased)."""
    labels: dict[str, str] = {}
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for row in csv.DictReader(handle):
            value = (row.get(key) or "").strip()
            label = normalise(row.get("label") or "")
            if value and label:
                labels[value.lower() if key == "sha256" else value] = label
    return labels
