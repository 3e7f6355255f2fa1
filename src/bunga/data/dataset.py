"""Reading the merged dataset back for training and evaluation, and the fixed test split."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bunga.data.images import iter_files
from bunga.data.merge import DATASET_CSV, IMAGES_CSV, load_manifest
from bunga.data.tabular import AliasBook, Row, SheetReader
from bunga.errors import BungaError
from bunga.files import sha256_file
from bunga.imaging import IMAGE_SUFFIXES
from bunga.schemas import FEATURES, OTHER_FLOWERS, normalise


@dataclass
class MeasurementSet:
    """Measurements (cm, NaN where missing) with their labels and specimen ids."""

    ids: list[str]
    x: np.ndarray
    y: np.ndarray
    digest: str
    source: Path

    def subset(self, mask: np.ndarray) -> MeasurementSet:
        """The rows where ``mask`` is true."""
        ids = [i for i, keep in zip(self.ids, mask, strict=True) if keep]
        return MeasurementSet(ids, self.x[mask], self.y[mask], self.digest, self.source)


@dataclass
class PhotoSet:
    """Photo paths with their sha256 and labels."""

    paths: list[Path]
    shas: list[str]
    y: np.ndarray
    digest: str
    source: Path
    credits: list[tuple[str, str]] | None = None  # (licence, link) per photo; empty strings: none recorded
    # the observation (photos of one plant) each photo came in; "" or None: a photo of its own
    observations: list[str] | None = None

    def subset(self, mask: np.ndarray) -> PhotoSet:
        """The photos where ``mask`` is true."""
        idx = np.flatnonzero(mask)
        credits = [self.credits[i] for i in idx] if self.credits is not None else None
        observations = [self.observations[i] for i in idx] if self.observations is not None else None
        return PhotoSet(
            [self.paths[i] for i in idx],
            [self.shas[i] for i in idx],
            self.y[mask],
            self.digest,
            self.source,
            credits,
            observations,
        )

    def groups(self) -> list[str]:
        """Each photo's group for splitting: its observation id, or its own sha256 when it has none."""
        observations = self.observations or [""] * len(self.shas)
        return [f"o:{o}" if o else f"p:{sha}" for o, sha in zip(observations, self.shas, strict=True)]

    def credit(self, index: int) -> tuple[str, str]:
        """(licence, link) of one photo; empty strings when none is recorded."""
        return self.credits[index] if self.credits is not None else ("", "")


def _digest(dataset_dir: Path) -> str:
    manifest = load_manifest(dataset_dir)
    if manifest is None:
        raise BungaError(f"{dataset_dir}/manifest.json not found: run `bunga merge` first")
    return manifest.dataset_digest


def load_measurements(dataset_dir: Path) -> MeasurementSet:
    """The merged measurements of ``Dataset Bunga/flowers_dataset.csv``."""
    path = dataset_dir / DATASET_CSV
    if not path.is_file():
        raise BungaError(f"{path} not found: run `bunga merge` first")
    ids, rows, labels = [], [], []
    with path.open(encoding="utf-8", newline="") as handle:
        for record in csv.DictReader(handle):
            ids.append(record["specimen_id"])
            rows.append([float(record[f]) if record[f] else np.nan for f in FEATURES])
            labels.append(record["species"])
    x = np.asarray(rows, dtype=np.float64).reshape(-1, len(FEATURES))
    return MeasurementSet(ids, x, np.asarray(labels, dtype=object), _digest(dataset_dir), path)


def load_photos(dataset_dir: Path) -> PhotoSet:
    """The merged photos listed in ``Dataset Bunga/images.csv``."""
    path = dataset_dir / IMAGES_CSV
    if not path.is_file():
        raise BungaError(f"{path} not found: run `bunga merge` first")
    paths, shas, labels, credits, observations = [], [], [], [], []
    with path.open(encoding="utf-8", newline="") as handle:
        for record in csv.DictReader(handle):
            paths.append(dataset_dir / record["path"])
            shas.append(record["sha256"])
            labels.append(record["label"])
            credits.append((record.get("licence") or "", record.get("link") or ""))
            observations.append(record.get("observation") or "")  # sheets made before it: none
    grouped = observations if any(observations) else None
    return PhotoSet(paths, shas, np.asarray(labels, dtype=object), _digest(dataset_dir), path, credits, grouped)


def photo_folder(folder: Path) -> PhotoSet:
    """Any labelled photo folder (one sub-folder per class), e.g. a newly collected batch."""
    if not folder.is_dir():
        raise BungaError(f"{folder} is not a folder of <class>/<photo> files")
    paths = [p for p in iter_files(folder) if p.suffix.lower() in IMAGE_SUFFIXES and p.parent != folder]
    if not paths:
        raise BungaError(f"no photos found in {folder}/<class>/ sub-folders")
    labels = np.asarray([normalise(p.parent.name) for p in paths], dtype=object)
    shas = [sha256_file(p) for p in paths]
    digest = hashlib.sha256("".join(sorted(shas)).encode()).hexdigest()
    return PhotoSet(paths, shas, labels, digest, folder)


def measurement_sheet(path: Path, aliases: AliasBook, max_cm: float) -> MeasurementSet:
    """Any measurement sheet the merge can read (headers, units and spellings resolved the same way)."""
    if not path.is_file():
        raise BungaError(f"{path} not found")
    rows = [r for r in SheetReader(aliases, max_cm, impute=False).read(path, path.name) if isinstance(r, Row)]
    if not rows:
        raise BungaError(f"{path} has no valid labelled measurement row")
    x = np.asarray([[np.nan if v is None else v for v in r.values] for r in rows], dtype=np.float64)
    y = np.asarray([r.species for r in rows], dtype=object)
    return MeasurementSet([r.specimen_id for r in rows], x, y, sha256_file(path), path)


def holdout_mask(
    keys: list[str], labels: np.ndarray, test_size: float, seed: int, observations: list[str] | None = None
) -> np.ndarray:
    """A stratified test split fixed by ``seed``: within each class, the items whose keyed hash ranks
    lowest. An item's side does not depend on input order and rarely changes as data grows, so
    a champion is re-evaluated on photos and flowers it (mostly) never trained on. Photos of one
    ``observations`` id (one plant) rank by the id's hash and always fall on the same side."""
    groups = [f"o:{o}" if o else k for o, k in zip(observations or [""] * len(keys), keys, strict=True)]
    side: dict[str, bool] = {}
    mask = np.zeros(len(keys), dtype=bool)
    for label in sorted(set(labels.tolist())):
        members = np.flatnonzero(labels == label)
        n_test = round(len(members) * test_size)
        n_test = min(max(n_test, 1), len(members) - 1) if len(members) >= 2 else 0
        taken = sum(side.get(groups[i], False) for i in members)  # groups another class already placed
        ranked = sorted(
            {groups[i] for i in members if groups[i] not in side},
            key=lambda g: hashlib.sha256(f"{seed}:{g}".encode()).hexdigest(),
        )
        sizes = Counter(groups[i] for i in members)
        for group in ranked:
            size = sizes[group]
            side[group] = taken < n_test and (taken + size <= n_test or taken == 0)
            taken += size if side[group] else 0
        mask[members] = [side[groups[i]] for i in members]
    return mask


MIN_PHOTOS_PER_SPECIES = 5  # fewer and a species is held back from photo training until more are added


def hold_back_scarce(data: PhotoSet, minimum: int = MIN_PHOTOS_PER_SPECIES) -> tuple[PhotoSet, dict[str, int]]:
    """The photos to train on, and the species held back with their counts: a species with fewer than
    ``minimum`` photos (one a curator just added) is not named yet: its photos join the other_flowers
    pool (flowers the model learns never to name) instead of failing the whole training; a pool that
    is itself under ``minimum`` is left out."""
    labels = data.y.astype(str)
    classes, counts = np.unique(labels, return_counts=True)
    scarce = {
        str(c): int(n)
        for c, n in zip(classes.tolist(), counts.tolist(), strict=True)
        if n < minimum and c != OTHER_FLOWERS
    }
    pooled = np.where(np.isin(labels, list(scarce)), OTHER_FLOWERS, labels)
    kept = PhotoSet(data.paths, data.shas, pooled, data.digest, data.source, data.credits, data.observations)
    in_pool = int((pooled == OTHER_FLOWERS).sum())
    if 0 < in_pool < minimum:  # too few to learn a pool from: left out, as a scarce species was
        return kept.subset(pooled != OTHER_FLOWERS), {**scarce, OTHER_FLOWERS: in_pool}
    return kept, scarce


def check_classes(labels: np.ndarray, kind: str, minimum: int) -> list[str]:
    """The sorted class list, or a one-line error when there are too few classes or examples."""
    classes, counts = np.unique(labels, return_counts=True) if len(labels) else (np.array([]), np.array([]))
    where = "Dataset Bunga/<class>/" if kind == "photos" else "the measurement sheets"
    if len(classes) == 0:
        raise BungaError(f"the dataset has no {kind}: add some to collected_data/ and run `bunga merge`")
    if len(classes) < 2:
        raise BungaError(f"only one class ({classes[0]}) in the {kind}: a classifier needs at least two")
    scarce = [f"{c} ({n})" for c, n in zip(classes, counts, strict=True) if n < minimum]
    if scarce:
        raise BungaError(
            f"too few {kind} in class {', '.join(scarce)}: each class needs at least {minimum}; "
            f"add more to {where} or remove the class"
        )
    return [str(c) for c in classes]
