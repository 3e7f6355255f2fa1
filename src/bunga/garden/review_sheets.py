"""Curating the review queues (photos by sha256, visitors' measurements by record id): export a queue
as a sheet, import the labels or decisions filled into it."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from bunga.errors import BungaError
from bunga.files import atomic_write_text, sha256_bytes
from bunga.garden import measurement_review as curation
from bunga.garden.label_sheets import LABEL_HEADER, REVIEW_CSV
from bunga.schemas import normalise

LABELS_DIR = "labels"


def export_queue(dataset_dir: Path, out: Path) -> int:
    """Write the review queue to ``out`` with absolute photo paths and an empty label column."""
    queue = dataset_dir / REVIEW_CSV
    if not queue.is_file():
        raise BungaError(f"{queue} not found: run `bunga merge` first")
    with queue.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*LABEL_HEADER, "photo", "source"])
    for row in rows:
        writer.writerow([row["sha256"], "", str((dataset_dir / row["path"]).resolve()), row["source"]])
    atomic_write_text(out, buffer.getvalue())
    return len(rows)


def export_measurements(dataset_dir: Path, out: Path) -> int:
    """Write the queue of visitors' measurements to ``out``: the proposed label beside an empty
    label column (a species, or ``reject``)."""
    queue = dataset_dir / curation.QUEUE_CSV
    if not queue.is_file():
        raise BungaError(f"{queue} not found: run `bunga merge` first")
    text = queue.read_text("utf-8")
    atomic_write_text(out, text)
    return max(0, len(text.splitlines()) - 1)


def _key(sheet: Path, line: int, header: tuple[str, str], value: str) -> str:
    if header == LABEL_HEADER:
        sha = value.lower()
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise BungaError(f"{sheet}:{line}: {sha!r} is not a sha256 from the review queue")
        return sha
    if not value.startswith("feedback-") or not value[9:].isalnum():
        raise BungaError(f"{sheet}:{line}: {value!r} is not a record id from the measurement review queue")
    return value


def import_labels(sheet: Path, data_dir: Path) -> tuple[int, Path | None]:
    """Copy the labelled rows of a filled review sheet (photos: ``sha256``; measurements:
    ``record_id``) into ``data_dir/labels/`` as a new file.

    The merge reads it next time; the raw photos and records are never moved or renamed.
    """
    if not sheet.is_file():
        raise BungaError(f"{sheet} not found: pass the sheet written by `bunga review export`")
    with sheet.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        columns = {normalise(f) for f in reader.fieldnames or []}
        header = next((h for h in (LABEL_HEADER, curation.DECISION_HEADER) if set(h) <= columns), None)
        if header is None:
            raise BungaError(f"{sheet} needs the columns sha256 (photos) or record_id (measurements), and label")
        labelled: list[tuple[str, str]] = []
        for line, row in enumerate(reader, start=2):
            row = {normalise(k): (v or "") for k, v in row.items() if k}
            label = normalise(row["label"])
            if label:
                labelled.append((_key(sheet, line, header, row[header[0]].strip()), label))
    if not labelled:
        return 0, None
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(sorted(labelled))
    text = buffer.getvalue()
    prefix = "review" if header == LABEL_HEADER else "review-measurements"
    out = data_dir / LABELS_DIR / f"{prefix}-{sha256_bytes(text.encode())[:12]}.csv"
    atomic_write_text(out, text)
    return len(labelled), out
