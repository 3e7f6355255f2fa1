"""Visitors' labelled measurements wait for a curator.

Votes cannot vouch for a measurement (four numbers rarely repeat), so a record posted to
``/feedback`` enters the dataset only when a curator's decision sheet (``record_id,label``) accepts
it: with a species (the visitor's or another) or ``reject``. Until then the merge counts it as
queued and lists it in ``review_measurements.csv`` for `bunga review export --kind measurements`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

from bunga.files import safe_cell
from bunga.garden.label_sheets import is_label_sheet, read_label_sheet
from bunga.schemas import FEATURES

DECISION_HEADER = ("record_id", "label")
REJECT = "reject"  # a curator's decision, never a species
QUEUE_CSV = "review_measurements.csv"
QUEUE_COLUMNS = ("record_id", *FEATURES, "proposed", "label", "source")


@dataclass(frozen=True)
class Feedback:
    """One visitor's labelled measurement, as stored in the inbox."""

    record_id: str
    values: tuple[float, float, float, float]
    label: str
    source: str  # the record's path relative to the data folder


def read_record(path: Path, source: str) -> Feedback | None:
    """The measurement feedback record in ``path``; None when the file is not one."""
    try:
        record = json.loads(path.read_text("utf-8"))
    except (ValueError, UnicodeDecodeError, OSError):
        return None
    if not isinstance(record, dict) or record.get("kind") != "measurements":
        return None
    values, label = record.get("values"), record.get("label")
    if not isinstance(values, list) or len(values) != len(FEATURES) or not isinstance(label, str):
        return None
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        return None
    return Feedback(path.stem, (float(values[0]), float(values[1]), float(values[2]), float(values[3])), label, source)


def is_decision_sheet(header: list[str]) -> bool:
    """True when a CSV header is a curator's measurement decision sheet (``record_id,label``)."""
    return is_label_sheet(header, DECISION_HEADER)


def read_decisions(path: Path) -> dict[str, str]:
    """record id -> species or ``reject`` (rows with an empty label are undecided and skipped)."""
    return read_label_sheet(path, key="record_id")


def accepted_sheet(record: Feedback, label: str) -> str:
    """The accepted record as a one-row measurement sheet (read by the merge like any other)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["specimen_id", *FEATURES, "species"])
    writer.writerow([record.record_id, *(f"{v:g}" for v in record.values), label])
    return out.getvalue()


def queue_text(queued: list[Feedback]) -> str:
    """The review queue of undecided records, by record id."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(QUEUE_COLUMNS)
    for record in sorted(queued, key=lambda r: r.record_id):
        cells = [safe_cell(record.label), "", safe_cell(record.source)]
        writer.writerow([record.record_id, *(f"{v:g}" for v in record.values), *cells])
    return out.getvalue()
