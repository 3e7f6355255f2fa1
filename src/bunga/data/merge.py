"""The lossless merge: ``collected_data/`` -> ``Dataset Bunga/`` with every record accounted for.

Rows are staged in a temporary SQLite file so that duplicates and conflicts are resolved in
bounded memory and the output order (and digest) does not depend on the order of the inputs.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sqlite3
import tempfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from bunga.catalog import Catalog, dump_catalog, load_catalog
from bunga.data import images as photos
from bunga.data.manifest import combine_digests, write_manifest
from bunga.data.tabular import BLANK, AliasBook, Rejected, Row, SheetError, SheetReader
from bunga.errors import BungaError
from bunga.files import atomic_copy, atomic_open, atomic_write_text, remove_stale_temps, safe_cell, sha256_file
from bunga.garden import catalog_edits, label_sheets
from bunga.garden import decisions as curator_decisions
from bunga.garden import measurement_review as curation
from bunga.garden.label_sheets import REVIEW_CSV
from bunga.schemas import FEATURES, FileEntry, FileKind, Manifest, normalise

DATASET_CSV = "flowers_dataset.csv"
REJECTED_CSV = "rejected.csv"
IMAGES_CSV = "images.csv"
REVIEW_DIR = "_review"
CATALOG_FILE = "species.yaml"
DATASET_COLUMNS = ("specimen_id", *FEATURES, "species", "source", "line")
REJECTED_COLUMNS = ("kind", "source", "line", "specimen_id", "reason")
# `observation`: the server's id of the photos of one plant a photo was sent with ("" when alone); sheets
# made before it lack the column and read as one photo per plant
IMAGE_COLUMNS = ("path", "label", "sha256", "width", "height", "format", "source", "licence", "link", "observation")
Progress = Callable[[int], None]


class MergeError(BungaError):
    """Nothing at all could be merged; the message says what to fix."""


@dataclass
class MergeOptions:
    """Inputs of one merge."""

    data_dir: Path
    dataset_dir: Path
    aliases: AliasBook
    max_cm: float = 50.0
    impute: bool = False
    image_max_pixels: int = 50_000_000
    image_min_side: int = 32
    cache_dir: Path | None = None  # where photo validation results are kept between merges
    votes: photos.VoteRule = field(default_factory=photos.VoteRule)  # when visitors' votes label a photo
    # The packaged (or configured) catalogue: the merge applies curators' edits to it, writes it as
    # species.yaml into the dataset version and lets visitors' votes name any species it holds.
    catalog: Catalog | None = field(default_factory=load_catalog)
    on_rows: Progress | None = None


@dataclass
class MergeResult:
    """The manifest of the merge, whether the dataset changed, and file-level messages."""

    manifest: Manifest
    changed: bool
    messages: list[str] = field(default_factory=list)


class _Staging:
    """A temporary SQLite database holding rows and rejections until they are resolved."""

    def __init__(self, path: Path) -> None:
        self.folder = path.parent
        self.db = sqlite3.connect(path)
        self.db.executescript(
            """
            PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;
            CREATE TABLE rows(specimen_id TEXT, sl REAL, sw REAL, pl REAL, pw REAL, species TEXT,
                              vkey TEXT, source TEXT, line INTEGER);
            CREATE TABLE rejected(kind TEXT, source TEXT, line INTEGER, specimen_id TEXT, reason TEXT);
            """
        )

    def add(self, batch: list[Row | Rejected]) -> None:
        rows = [r for r in batch if isinstance(r, Row)]
        self.db.executemany(
            "INSERT INTO rows VALUES (?,?,?,?,?,?,?,?,?)",
            [(r.specimen_id, *r.values, r.species, repr((r.values, r.species)), r.source, r.line) for r in rows],
        )
        self.db.executemany(
            "INSERT INTO rejected VALUES ('rejected',?,?,?,?)",
            [(r.source, r.line, r.specimen_id, r.reason) for r in batch if isinstance(r, Rejected)],
        )

    def resolve(self) -> None:
        """Turn conflicts into rejections and repeated identical records into duplicates."""
        db = self.db
        db.executescript(
            """
            CREATE INDEX rows_id ON rows(specimen_id, source, line);
            CREATE TEMP TABLE conflicts AS
              SELECT specimen_id FROM rows GROUP BY specimen_id HAVING COUNT(DISTINCT vkey) > 1;
            """
        )
        for (specimen,) in db.execute("SELECT specimen_id FROM conflicts").fetchall():
            places = db.execute(
                "SELECT source, line FROM rows WHERE specimen_id=? ORDER BY source, line", (specimen,)
            ).fetchall()
            for source, line in places:
                others = [f"{s}:{n}" for s, n in places if (s, n) != (source, line)]
                shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
                db.execute(
                    "INSERT INTO rejected VALUES ('rejected',?,?,?,?)",
                    (source, line, specimen, f"conflict: specimen {specimen} has other values in {shown}"),
                )
        db.executescript(
            """
            DELETE FROM rows WHERE specimen_id IN (SELECT specimen_id FROM conflicts);
            CREATE TEMP TABLE ranked AS SELECT rowid AS rid, specimen_id, source, line,
              ROW_NUMBER() OVER (PARTITION BY specimen_id ORDER BY source, line) AS n,
              FIRST_VALUE(source || ':' || line) OVER (PARTITION BY specimen_id ORDER BY source, line) AS first
              FROM rows;
            INSERT INTO rejected SELECT 'duplicate', source, line, specimen_id,
              'duplicate of ' || first || ' (same specimen, same values)' FROM ranked WHERE n > 1;
            DELETE FROM rows WHERE rowid IN (SELECT rid FROM ranked WHERE n > 1);
            """
        )

    def count(self, sql: str) -> int:
        return int(self.db.execute(sql).fetchone()[0])


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def _write_measurements(stage: _Staging, dataset_dir: Path) -> str:
    """Write the kept rows sorted by specimen id and the rejected list; returns the content digest."""
    digest = hashlib.sha256()
    with atomic_open(dataset_dir / DATASET_CSV, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(DATASET_COLUMNS)
        query = "SELECT specimen_id, sl, sw, pl, pw, species, source, line FROM rows ORDER BY specimen_id"
        for specimen, sl, sw, pl, pw, species, source, line in stage.db.execute(query):
            values = [_fmt(v) for v in (sl, sw, pl, pw)]
            digest.update(("\x1f".join([specimen, *values, species]) + "\n").encode())
            writer.writerow([safe_cell(specimen), *values, species, safe_cell(source), line])
    with atomic_open(dataset_dir / REJECTED_CSV, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(REJECTED_COLUMNS)
        query = "SELECT kind, source, line, specimen_id, reason FROM rejected ORDER BY source, line, kind"
        for kind, source, line, specimen, reason in stage.db.execute(query):
            writer.writerow([kind, safe_cell(source), line, safe_cell(specimen), safe_cell(reason)])
    return digest.hexdigest()


@dataclass
class _PhotoOutcome:
    kept: list[tuple[str, photos.CheckedPhoto]] = field(default_factory=list)  # (dataset path, photo)
    queued: list[photos.CheckedPhoto] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    duplicates: int = 0


def _resolve_photos(checked: list[photos.CheckedPhoto], garden: list[photos.CheckedPhoto]) -> _PhotoOutcome:
    """Group photos by content hash: one kept per hash, label conflicts rejected, unlabelled queued."""
    out = _PhotoOutcome()
    by_sha: dict[str, list[photos.CheckedPhoto]] = defaultdict(list)
    for item in checked:
        if item.reason is not None:
            out.rejected.append((item.photo.source, item.reason))
        else:
            by_sha[item.photo.sha256].append(item)
    garden_by_sha = {g.photo.sha256: g for g in garden}
    for sha in sorted(by_sha):
        group = sorted(by_sha[sha], key=lambda c: c.photo.source)
        labels = sorted({c.photo.label for c in group if c.photo.label})
        if len(labels) > 1:
            where = ", ".join(f"{c.photo.source} ({c.photo.label or 'unlabelled'})" for c in group)
            out.rejected.extend((c.photo.source, f"conflicting labels for one photo: {where}") for c in group)
            continue
        out.duplicates += len(group) - 1
        first = group[0]
        if not labels:
            out.queued.append(first)
            continue
        label = labels[0]
        target = f"{label}/{sha[:16]}.{first.info.suffix if first.info else 'jpg'}"
        in_garden = garden_by_sha.get(sha)
        if in_garden is not None and in_garden.photo.label == label:
            target = in_garden.photo.source  # already in the dataset folder: no second copy
        out.kept.append(
            (
                target,
                photos.CheckedPhoto(
                    photos.PhotoFile(first.photo.path, first.photo.source, sha, label), first.info, None
                ),
            )
        )
    return out


class Merger:
    """Runs one merge; see :func:`merge`."""

    def __init__(self, options: MergeOptions) -> None:
        self.o = options
        self.files: list[FileEntry] = []
        self.messages: list[str] = []
        self.sheets: list[tuple[Path, str]] = []
        self.photo_paths: list[tuple[Path, str, str]] = []  # (path, relative name, sha256)
        self.curated: dict[str, str] = {}
        self.votes: dict[str, list[photos.Vote]] = defaultdict(list)
        self.credits: dict[str, tuple[str, str]] = {}  # photo source -> (licence, link)
        self.observations: dict[str, str] = {}  # photo sha256 -> the observation (one plant) it was sent in
        self.feedback: list[curation.Feedback] = []  # visitors' labelled measurements
        self.decisions: dict[str, str] = {}  # record id -> a curator's species or "reject"
        self.photo_decisions: list[curator_decisions.Decision] = []  # the review page's, every one kept
        self.catalog_edits: list[catalog_edits.Edit] = []
        self.vote_rule = options.votes

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.o.data_dir).as_posix()

    def scan(self) -> None:
        """Classify every input file: measurement sheet, label sheet, photo, or ignored."""
        for path in photos.iter_files(self.o.data_dir, skip=[self.o.dataset_dir]):
            rel = self._rel(path)
            sha = sha256_file(path)
            suffix = path.suffix.lower()
            kind: FileKind = "ignored"
            if suffix in {".csv", ".tsv"}:
                kind = "measurements"
                header = _first_row(path)
                if header is not None and label_sheets.is_label_sheet(header):
                    kind = "labels"
                    self.curated.update(label_sheets.read_label_sheet(path))
                elif header is not None and curation.is_decision_sheet(header):
                    kind = "labels"
                    self.decisions.update(curation.read_decisions(path))
                elif curation.read_record(path.with_suffix(".json"), rel) is not None:
                    kind = "ignored"  # an older inbox's copy of a feedback record: the record is what counts
                else:
                    self.sheets.append((path, rel))
            elif photos.is_photo_name(path):
                kind = "photo"
                self.photo_paths.append((path, rel, sha))
            elif path.name == photos.ATTRIBUTION_FILE:
                self.credits.update(photos.read_attribution(path, Path(rel).parent.as_posix()))
            elif suffix == ".json" and (edit := catalog_edits.read(path)) is not None:
                kind = "catalog"
                self.catalog_edits.append(edit)
            elif suffix == ".json" and (decision := curator_decisions.read(path)) is not None:
                kind = "labels"
                self.photo_decisions.append(decision)
            elif suffix == ".json" and (vote := photos.read_feedback_record(path)) is not None:
                kind = "labels"
                self.votes[vote[0]].append(vote[1])
                if vote[2]:
                    self.observations[vote[0]] = vote[2]
            elif suffix == ".json" and (record := curation.read_record(path, rel)) is not None:
                kind = "measurements"
                self.feedback.append(record)
            elif suffix not in {".md", ".json", ".yaml", ".yml"}:
                self.messages.append(f"{rel}: not a sheet or a photo, left alone")
            self.files.append(FileEntry(path=rel, sha256=sha, kind=kind))

    def write_catalog(self) -> tuple[str, list[str]]:
        """With a catalogue given: write it with the curators' edits applied (``species.yaml``), let
        visitors' votes name any of its species; its digest and the species the edits added."""
        if self.o.catalog is None:
            return "", []
        merged = catalog_edits.apply(self.o.catalog, self.catalog_edits)
        text = dump_catalog(merged)
        path = self.o.dataset_dir / CATALOG_FILE
        if not path.is_file() or path.read_text("utf-8") != text:
            atomic_write_text(path, text)
        if self.vote_rule.known is not None:
            self.vote_rule = replace(self.vote_rule, known=frozenset(merged.entries))
        added = sorted(set(merged.entries) - set(self.o.catalog.entries))
        return hashlib.sha256(text.encode()).hexdigest(), added

    def merge_measurements(self, stage: _Staging, manifest: Manifest) -> None:
        """Read every sheet into the staging database."""
        reader = SheetReader(self.o.aliases, self.o.max_cm, self.o.impute)
        done = 0
        for path, rel in self.sheets:
            batch: list[Row | Rejected] = []
            try:
                for item in reader.read(path, rel):
                    if isinstance(item, Rejected) and item.reason == BLANK:
                        manifest.blank_lines += 1
                        continue
                    batch.append(item)
                    if len(batch) >= 10_000:
                        stage.add(batch)
                        done += len(batch)
                        batch = []
                        if self.o.on_rows:
                            self.o.on_rows(done)
            except SheetError as err:
                self.messages.append(f"{rel}: {err}")
                stage.db.execute("INSERT INTO rejected VALUES ('file',?,0,'',?)", (rel, str(err)))
                self._mark_rejected(rel)
            stage.add(batch)
            done += len(batch)
        if self.o.on_rows:
            self.o.on_rows(done)
        queued = self._merge_feedback(stage, reader)
        stage.resolve()
        manifest.rows_kept = stage.count("SELECT COUNT(*) FROM rows")
        manifest.rows_rejected = stage.count("SELECT COUNT(*) FROM rejected WHERE kind='rejected'")
        manifest.rows_duplicate = stage.count("SELECT COUNT(*) FROM rejected WHERE kind='duplicate'")
        manifest.rows_queued = len(queued)
        manifest.rows_read = manifest.rows_kept + manifest.rows_rejected + manifest.rows_duplicate + len(queued)
        manifest.rows_with_missing = stage.count(
            "SELECT COUNT(*) FROM rows WHERE sl IS NULL OR sw IS NULL OR pl IS NULL OR pw IS NULL"
        )
        manifest.classes_measurements = [
            r[0] for r in stage.db.execute("SELECT DISTINCT species FROM rows ORDER BY species")
        ]

    def _merge_feedback(self, stage: _Staging, reader: SheetReader) -> list[curation.Feedback]:
        """Visitors' measurements a curator accepted join the rows (validated like any sheet row), those
        rejected are recorded as rejected; the rest wait in the review queue, which is returned."""
        queued = []
        for record in self.feedback:
            decision = self.decisions.get(record.record_id)
            if decision is None:
                queued.append(record)
            elif decision == curation.REJECT:
                stage.db.execute(
                    "INSERT INTO rejected VALUES ('rejected',?,1,?,'rejected by a curator')",
                    (record.source, record.record_id),
                )
            else:
                sheet = stage.folder / f"{record.record_id}.csv"
                sheet.write_text(curation.accepted_sheet(record, decision), encoding="utf-8")
                stage.add(list(reader.read(sheet, record.source)))
        atomic_write_text(self.o.dataset_dir / curation.QUEUE_CSV, curation.queue_text(queued))
        return queued

    def _mark_rejected(self, rel: str) -> None:
        self.files = [f.model_copy(update={"kind": "rejected"}) if f.path == rel else f for f in self.files]

    def merge_photos(self, manifest: Manifest) -> tuple[str, list[tuple[str, str]]]:
        """Validate, deduplicate and copy photos; returns the photo digest and rejections."""
        o = self.o
        rule = self.vote_rule
        if rule.known is not None:  # a species the collection already has counts as known too
            present = {photos.folder_label(p, o.data_dir) for p, _, _ in self.photo_paths} - {None}
            if o.dataset_dir.is_dir():
                present |= {d.name for d in o.dataset_dir.iterdir() if d.is_dir() and d.name[0] not in "_."}
            rule = replace(rule, known=rule.known | {str(label) for label in present})
        in_force = curator_decisions.latest(self.photo_decisions)  # the review page's latest, over sheets
        curated = {**self.curated, **{sha: d.label for sha, d in in_force.items() if d.label}}
        found = [
            photos.find_photo(p, sha, o.data_dir, rel, curated, self.votes, rule) for p, rel, sha in self.photo_paths
        ]
        cache = photos.CheckCache(o.cache_dir, o.image_max_pixels, o.image_min_side) if o.cache_dir else None
        checked = [photos.check_photo(p, o.image_max_pixels, o.image_min_side, cache) for p in found]
        checked = [  # "not a flower" and "reject" keep a photo out, whatever its votes say
            replace(c, reason=in_force[c.photo.sha256].rejection)
            if c.photo.sha256 in in_force and in_force[c.photo.sha256].rejection
            else c
            for c in checked
        ]
        checked = [  # a decision word as a label (visitors' "not a flower", a folder named "reject"): never a class
            replace(c, reason=why)
            if c.reason is None and (why := photos.reserved_reason(c.photo, c.photo.sha256 in self.votes))
            else c
            for c in checked
        ]
        collected = {(c.photo.sha256, c.photo.label) for c in checked}
        garden: list[photos.CheckedPhoto] = []
        for path in photos.iter_files(o.dataset_dir):
            rel = path.relative_to(o.dataset_dir)
            if len(rel.parts) != 2 or rel.parts[0].startswith("_") or not photos.is_photo_name(path):
                continue
            found_here = photos.PhotoFile(path, rel.as_posix(), sha256_file(path), normalise(rel.parts[0]))
            if (found_here.sha256, found_here.label) in collected:
                continue  # our own copy of a collected photo
            garden.append(photos.check_photo(found_here, o.image_max_pixels, o.image_min_side, cache))
        outcome = _resolve_photos(checked + garden, [g for g in garden if g.reason is None])
        for target, item in outcome.kept:
            dest = o.dataset_dir / target
            if not dest.exists() or sha256_file(dest) != item.photo.sha256:
                atomic_copy(item.photo.path, dest)
        self._write_review(outcome.queued)
        if cache is not None:
            cache.save()
        rows = sorted(
            (
                target,
                item.photo.label or "",
                item.photo.sha256,
                item.info.width,
                item.info.height,
                item.info.format,
                item.photo.source,
                *self.credits.get(item.photo.source, ("", "")),
                self.observations.get(item.photo.sha256, ""),
            )
            for target, item in outcome.kept
            if item.info is not None
        )
        digest = hashlib.sha256()
        with atomic_open(o.dataset_dir / IMAGES_CSV, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(IMAGE_COLUMNS)
            for row in rows:
                observed = f"\x1f{row[-1]}" if row[-1] else ""  # photos sent alone hash as before the column
                digest.update(f"{row[2]}\x1f{row[1]}{observed}\n".encode())
                writer.writerow([safe_cell(str(v)) for v in row])
        manifest.images_read = len(checked) + len(garden)
        manifest.images_kept = len(outcome.kept)
        manifest.images_rejected = len(outcome.rejected)
        manifest.images_duplicate = outcome.duplicates
        manifest.images_queued = len(outcome.queued)
        counts: dict[str, int] = defaultdict(int)
        for _, item in outcome.kept:
            counts[item.photo.label or ""] += 1
        manifest.classes_photos = dict(sorted(counts.items()))
        return digest.hexdigest(), outcome.rejected

    def _write_review(self, queued: list[photos.CheckedPhoto]) -> None:
        review_dir = self.o.dataset_dir / REVIEW_DIR
        wanted: set[str] = set()
        with atomic_open(self.o.dataset_dir / REVIEW_CSV, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(("sha256", "label", "path", "source"))
            for item in sorted(queued, key=lambda q: q.photo.sha256):
                name = f"{item.photo.sha256[:16]}.{item.info.suffix if item.info else 'jpg'}"
                wanted.add(name)
                dest = review_dir / name
                if not dest.exists():
                    atomic_copy(item.photo.path, dest)
                writer.writerow([item.photo.sha256, "", f"{REVIEW_DIR}/{name}", safe_cell(item.photo.source)])
        if review_dir.is_dir():
            for stale in review_dir.iterdir():
                if stale.name not in wanted:  # a derived copy of a photo that has a label now
                    stale.unlink()


def _first_row(path: Path) -> list[str] | None:
    try:
        with path.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
            head = handle.readline()
    except OSError:
        return None
    delimiter = max((",", ";", "\t"), key=head.count)
    return next(csv.reader([head], delimiter=delimiter), None)


def merge(options: MergeOptions) -> MergeResult:
    """Merge everything under ``data_dir`` into ``dataset_dir``; raises MergeError if nothing merges."""
    if not options.data_dir.is_dir() and not options.dataset_dir.is_dir():
        raise MergeError(f"neither {options.data_dir}/ nor {options.dataset_dir}/ exists: nothing to merge")
    options.dataset_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(options.dataset_dir)
    merger = Merger(options)
    merger.scan()
    catalog_digest, added = merger.write_catalog()
    has_garden = any(photos.is_photo_name(p) for p in photos.iter_files(options.dataset_dir))
    if not merger.sheets and not merger.photo_paths and not has_garden:
        raise MergeError(f"no measurement sheet (.csv) or photo found in {options.data_dir}/: add data there first")
    manifest = Manifest(
        dataset_digest="",
        measurements_digest="",
        photos_digest="",
        missing_policy="median" if options.impute else "reject",
        catalog_digest=catalog_digest,
        species_added=added,
    )
    with tempfile.TemporaryDirectory(prefix="bunga-merge-") as tmp:
        stage = _Staging(Path(tmp) / "stage.db")
        merger.merge_measurements(stage, manifest)
        manifest.photos_digest, photo_rejections = merger.merge_photos(manifest)
        stage.db.executemany(  # photo rejections join the one sorted rejected.csv written below
            "INSERT INTO rejected VALUES ('photo',?,0,'',?)", photo_rejections
        )
        manifest.measurements_digest = _write_measurements(stage, options.dataset_dir)
        stage.db.close()
    manifest.files = merger.files
    manifest.dataset_digest = combine_digests(manifest)
    if not (manifest.rows_kept or manifest.rows_queued or manifest.images_kept or manifest.images_queued):
        why = "; ".join(merger.messages[:3]) or "no measurement sheet or photo found"
        raise MergeError(f"nothing could be merged from {options.data_dir}/ ({why})")
    changed = write_manifest(options.dataset_dir, manifest)
    return MergeResult(manifest=manifest, changed=changed, messages=merger.messages)


def load_manifest(dataset_dir: Path) -> Manifest | None:
    """The manifest of the last merge, or None."""
    path = dataset_dir / "manifest.json"
    if not path.is_file():
        return None
    return Manifest.model_validate(json.loads(path.read_text("utf-8")))
