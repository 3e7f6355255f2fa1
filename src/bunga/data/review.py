"""Curating queued photos: export the review queue as a sheet, import the labels filled into it."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from bunga.data.images import LABEL_HEADER
from bunga.data.merge import REVIEW_CSV
from bunga.data.tabular import normalise
from bunga.errors import BungaError
from bunga.files import atomic_write_text, sha256_bytes

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


def import_labels(sheet: Path, data_dir: Path) -> tuple[int, Path | None]:
    """Copy the labelled rows of a filled review sheet into ``data_dir/labels/`` as a new file.

    The merge reads it next time; the raw photos are never moved or renamed.
    """
    if not sheet.is_file():
        raise BungaError(f"{sheet} not found: pass the sheet written by `bunga review export`")
    with sheet.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not set(LABEL_HEADER) <= {normalise(f) for f in reader.fieldnames}:
            raise BungaError(f"{sheet} needs the columns sha256 and label")
        labelled: list[tuple[str, str]] = []
        for line, row in enumerate(reader, start=2):
            row = {normalise(k): (v or "") for k, v in row.items() if k}
            sha, label = row["sha256"].strip().lower(), normalise(row["label"])
            if not label:
                continue
            if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
                raise BungaError(f"{sheet}:{line}: {sha!r} is not a sha256 from the review queue")
            labelled.append((sha, label))
    if not labelled:
        return 0, None
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(LABEL_HEADER)
    writer.writerows(sorted(labelled))
    text = buffer.getvalue()
    out = data_dir / LABELS_DIR / f"review-{sha256_bytes(text.encode())[:12]}.csv"
    atomic_write_text(out, text)
    return len(labelled), out
